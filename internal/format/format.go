// Package format renders CLI output the way Docker users expect: aligned
// tables by default, `--format 'table {{.ID}}\t{{.Hostname}}'` for chosen
// columns, `--format '{{.ID}}'` for a Go template per row, and
// `--format json` for one JSON object per row.
package format

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
)

// Rows prints rows (structs) in the given format; def is the default table
// template used when format is empty. A table has its header even when there
// are no rows: the titles come from T's fields.
func Rows[T any](w io.Writer, format, def string, rows []T) error {
	if format == "" {
		format = def
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	table := strings.HasPrefix(format, "table")
	text := strings.TrimSpace(strings.TrimPrefix(format, "table"))
	tmpl, err := template.New("format").Funcs(funcs).Parse(unescape(text) + "\n")
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	out := w
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		out = tw
		if err := tmpl.Execute(out, headers(reflect.TypeFor[T]())); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
	}
	for _, r := range rows {
		if err := tmpl.Execute(out, r); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// One prints a single value with a template, or as indented JSON when format
// is empty or "json".
func One(w io.Writer, format string, v any) error {
	if format == "" || format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "    ")
		return enc.Encode(v)
	}
	tmpl, err := template.New("format").Funcs(funcs).Parse(unescape(format) + "\n")
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	return tmpl.Execute(w, v)
}

var funcs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"join":  strings.Join,
}

// unescape lets users type \t and \n in a shell argument.
func unescape(s string) string {
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(s)
}

// headers maps each field of the row type to its column title: ManagerStatus
// becomes "MANAGER STATUS". A field may set its title with a `header` tag.
func headers(t reflect.Type) map[string]string {
	out := map[string]string{}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if h := f.Tag.Get("header"); h != "" {
			out[f.Name] = h
			continue
		}
		out[f.Name] = title(f.Name)
	}
	return out
}

func title(name string) string {
	var b strings.Builder
	runes := []rune(name)
	for i, r := range runes {
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(runes[i-1]) || (i+1 < len(runes) && unicode.IsLower(runes[i+1]))) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
