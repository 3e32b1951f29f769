package jsonfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteThenRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	type rec struct{ A int }
	if err := Write(path, rec{1}, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, rec{2}, 0o640); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := Read(path, &got); err != nil || got.A != 2 {
		t.Fatalf("Read = %+v, %v; want {A:2}", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only the record (no temporary file left)", len(entries))
	}
	if err := Read(filepath.Join(dir, "none.json"), &got); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of a missing file = %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Read(path, &got); err == nil {
		t.Error("Read of a cut-short record succeeded")
	}
}
