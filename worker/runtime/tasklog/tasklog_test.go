package tasklog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, w *Writer, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if err := w.Write(Entry{Time: time.Now(), Stream: Stdout, Line: []byte(l)}); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
}

func read(t *testing.T, path string, opts ReadOptions) []string {
	t.Helper()
	var out []string
	err := Read(t.Context(), path, opts, func(e Entry) error {
		out = append(out, string(e.Line))
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("line %03d", i))
	}
	return out
}

func TestRotationKeepsFilesAndOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.jsonl")
	w, err := NewWriter(path, 300, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, numbered(1, 40)...)
	names, _ := filepath.Glob(path + "*")
	if len(names) != 3 {
		t.Fatalf("files %v, want 3", names)
	}
	for _, n := range names {
		if st, _ := os.Stat(n); st.Size() > 300 {
			t.Fatalf("%s has %d bytes, over the limit", n, st.Size())
		}
	}
	all := read(t, path, ReadOptions{Tail: -1})
	if len(all) == 0 || all[len(all)-1] != "line 040" {
		t.Fatalf("all lines %q", all)
	}
	if want := numbered(41-len(all), 40); strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("lines %q, want the most recent in order %q", all, want)
	}
	if got := read(t, path, ReadOptions{Tail: 5}); strings.Join(got, ",") != strings.Join(numbered(36, 40), ",") {
		t.Fatalf("tail 5 across files: %q", got)
	}
}

func TestSinceAndUnicode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.jsonl")
	w, _ := NewWriter(path, 0, 0)
	defer w.Close()
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for i, l := range []string{"old", "héllo \"quoted\"", "new"} {
		if err := w.Write(Entry{Time: base.Add(time.Duration(i) * time.Second), Stream: Stderr, Line: []byte(l)}); err != nil {
			t.Fatal(err)
		}
	}
	got := read(t, path, ReadOptions{Tail: -1, Since: base.Add(time.Second)})
	if strings.Join(got, "|") != `héllo "quoted"|new` {
		t.Fatalf("since: %q", got)
	}
	if got := read(t, filepath.Join(t.TempDir(), "missing"), ReadOptions{Tail: -1}); len(got) != 0 {
		t.Fatalf("missing log: %q", got)
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.jsonl")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	lines := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		// Started before the file exists: following waits for it.
		done <- Read(ctx, path, ReadOptions{Tail: -1, Follow: true}, func(e Entry) error {
			lines <- string(e.Line)
			return nil
		})
	}()
	w, err := NewWriter(path, 200, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Write in small bursts, each waiting to be read, so no rotation
	// outruns the reader's three files.
	next := 1
	for burst := 0; burst < 10; burst++ {
		write(t, w, numbered(next, next+1)...)
		for _, want := range numbered(next, next+1) {
			select {
			case got := <-lines:
				if got != want {
					t.Fatalf("followed %q, want %q", got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no line %q followed", want)
			}
		}
		next += 2
	}
	rotated, _ := filepath.Glob(path + ".*")
	if len(rotated) == 0 {
		t.Fatalf("the test wrote too little to rotate")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func TestFollowStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.jsonl")
	w, _ := NewWriter(path, 0, 0)
	defer w.Close()
	write(t, w, "one")
	stop := make(chan struct{})
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- Read(t.Context(), path, ReadOptions{Tail: -1, Follow: true, Stop: func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}}, func(e Entry) error {
			got = append(got, string(e.Line))
			return nil
		})
	}()
	write(t, w, "two")
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Read: %v", err)
	}
	// Lines written before Stop said so are delivered.
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("lines %q", got)
	}
}
