package stack

import (
	"reflect"
	"slices"
	"sort"
	"strings"
)

// keySet is the set of compose keys a conversion honours, as dotted yaml
// paths; "*" stands for any key of a map (a network or dependency name).
type keySet map[string]bool

func newKeySet(keys ...string) keySet {
	s := keySet{}
	for _, k := range keys {
		s[k] = true
	}
	return s
}

// within reports whether some honoured key lies below path, so the walk
// must look inside path rather than name it as a whole.
func (s keySet) within(path string) bool {
	for k := range s {
		if strings.HasPrefix(k, path+".") {
			return true
		}
	}
	return false
}

// unsupportedKeys names, sorted and without repeats, every key set in v (a
// compose-go struct) that honoured does not list. It reads the yaml tags,
// so a field a later compose-go adds is reported rather than dropped.
// Extensions (x-*) are allowed and never reported.
func unsupportedKeys(v any, honoured keySet) []string {
	var out []string
	walkStruct(reflect.ValueOf(v), "", "", honoured, &out)
	slices.Sort(out)
	return slices.Compact(out)
}

// walkStruct reports the fields of struct v; pattern is the path with "*"
// for map keys (matched against honoured), shown the path as written.
func walkStruct(v reflect.Value, pattern, shown string, honoured keySet, out *[]string) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if strings.Contains(opts, "inline") {
			if fv.Kind() == reflect.Struct {
				walkStruct(fv, pattern, shown, honoured, out)
			}
			continue
		}
		if name == "" || name == "-" || strings.HasPrefix(name, "#") || isEmpty(fv) {
			continue
		}
		p, s := join(pattern, name), join(shown, name)
		switch {
		case honoured[p]:
		case honoured.within(p):
			walkValue(fv, p, s, honoured, out)
		default:
			*out = append(*out, s)
		}
	}
}

// walkValue looks inside a field some honoured key lies below.
func walkValue(v reflect.Value, pattern, shown string, honoured keySet, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkValue(v.Elem(), pattern, shown, honoured, out)
		}
	case reflect.Struct:
		walkStruct(v, pattern, shown, honoured, out)
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkValue(v.Index(i), pattern, shown, honoured, out)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			walkValue(v.MapIndex(k), join(pattern, "*"), join(shown, k.String()), honoured, out)
		}
	default:
		*out = append(*out, shown)
	}
}

// isEmpty reports whether v holds nothing a user wrote: the zero value, an
// empty slice or map, or a pointer to an empty struct (compose-go fills
// `volume: {}` in on its own). A pointer to a zero number or bool was
// written (`scale: 0`), so it is not empty.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil() || (v.Elem().Kind() == reflect.Struct && isEmpty(v.Elem()))
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && !isEmpty(v.Field(i)) {
				return false
			}
		}
		return true
	default:
		return v.IsZero()
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
