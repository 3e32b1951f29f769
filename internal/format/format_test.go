package format

import (
	"bytes"
	"strings"
	"testing"
)

type row struct {
	ID            string
	ManagerStatus string
	Addr          string `header:"ADDRESS"`
}

func TestRows(t *testing.T) {
	rows := []row{{"abc", "leader", "127.0.0.2:2377"}, {"defgh", "", "127.0.0.3:2377"}}
	def := `table {{.ID}}\t{{.ManagerStatus}}\t{{.Addr}}`
	cases := []struct {
		name, format, want string
	}{
		{"default table", "", "ID      MANAGER STATUS   ADDRESS\nabc     leader           127.0.0.2:2377\ndefgh                    127.0.0.3:2377\n"},
		{"chosen columns", `table {{.ID}}\t{{.Addr}}`, "ID      ADDRESS\nabc     127.0.0.2:2377\ndefgh   127.0.0.3:2377\n"},
		{"template", "{{.ID}}", "abc\ndefgh\n"},
		{"json", "json", `{"ID":"abc","ManagerStatus":"leader","Addr":"127.0.0.2:2377"}` + "\n" + `{"ID":"defgh","ManagerStatus":"","Addr":"127.0.0.3:2377"}` + "\n"},
		{"json func", "{{json .ID}}", "\"abc\"\n\"defgh\"\n"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := Rows(&buf, c.format, def, rows); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if buf.String() != c.want {
			t.Fatalf("%s: got\n%q\nwant\n%q", c.name, buf.String(), c.want)
		}
	}
}

func TestRowsBadTemplate(t *testing.T) {
	var buf bytes.Buffer
	err := Rows(&buf, "{{.ID", "", []row{{}})
	if err == nil || !strings.Contains(err.Error(), "--format") {
		t.Fatalf("want a --format error, got %v", err)
	}
	err = Rows(&buf, "{{.Nope}}", "", []row{{}})
	if err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("want an error naming the unknown field, got %v", err)
	}
}

func TestOne(t *testing.T) {
	var buf bytes.Buffer
	if err := One(&buf, "{{.ID}} is {{.ManagerStatus}}", row{ID: "abc", ManagerStatus: "leader"}); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "abc is leader\n" {
		t.Fatalf("got %q", got)
	}
}

func TestRowsWithoutRowsPrintsTheHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := Rows(&buf, "", `table {{.ID}}\t{{.Addr}}`, []row(nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "ID   ADDRESS\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
