package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stack config needs no cluster: it prints the files merged and
// interpolated, named after the stack given or the first file's directory,
// and refuses a bad file naming its line.
func TestStackConfig(t *testing.T) {
	words := filepath.Join("..", "..", "testdata", "stacks", "words.yml")
	t.Setenv("WEB_VERSION", "v9")
	out, err := runCLI("unix:///nonexistent.sock", "stack", "config", "-c", words, "demo")
	if err != nil {
		t.Fatalf("stack config: %v\n%s", err, out)
	}
	for _, want := range []string{"name: demo\n", "image: words-web:v9\n", "USERS: demo:demo\n", "condition: service_healthy\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stack config does not print %q:\n%s", want, out)
		}
	}
	if out, err = runCLI("unix:///nonexistent.sock", "stack", "config", "-c", words); err != nil || !strings.Contains(out, "name: stacks\n") {
		t.Errorf("stack config without a name = %v; want the project named after the file's directory (stacks):\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("services:\n  web:\n    image: x\n     ports: [80]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = runCLI("unix:///nonexistent.sock", "stack", "config", "-c", bad, "demo"); err == nil || !strings.Contains(err.Error(), bad+":4:") {
		t.Errorf("stack config of a broken file = %v; want an error at %s:4", err, bad)
	}
}
