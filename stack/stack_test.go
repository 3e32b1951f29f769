package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"google.golang.org/protobuf/encoding/protojson"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/stacks")

// corpusEnv is the environment the corpus is interpolated with (the CLI
// passes os.Environ).
var corpusEnv = map[string]string{"WEB_TAG": "1.27", "WEB_REPLICAS": "2", "SHARED": "from-env"}

const stacksDir = "../testdata/stacks"

// TestCorpus converts each case of testdata/stacks/corpus and compares the
// outcome with its golden file. A case is NAME.yml (with NAME.override.yml
// merged after it when present) or a directory NAME holding compose.yml and
// a .env file. words.yml is converted too, as stack words.
func TestCorpus(t *testing.T) {
	corpus := filepath.Join(stacksDir, "corpus")
	entries, err := os.ReadDir(corpus)
	if err != nil {
		t.Fatal(err)
	}
	cases := 0
	for _, e := range entries {
		name, files := caseFiles(t, corpus, e)
		if name == "" {
			continue
		}
		cases++
		t.Run(name, func(t *testing.T) {
			checkGolden(t, filepath.Join(corpus, name+".golden"), render(t, "app", files))
		})
	}
	if cases < 32 {
		t.Errorf("the corpus has %d cases, want at least 32", cases)
	}
	t.Run("words", func(t *testing.T) {
		checkGolden(t, filepath.Join(stacksDir, "words.golden"), render(t, "words", []string{filepath.Join(stacksDir, "words.yml")}))
	})
}

// caseFiles returns the case an entry of the corpus is, if any, and its
// compose files in merge order.
func caseFiles(t *testing.T, corpus string, e os.DirEntry) (string, []string) {
	if e.IsDir() {
		return e.Name(), []string{filepath.Join(corpus, e.Name(), "compose.yml")}
	}
	name, ok := strings.CutSuffix(e.Name(), ".yml")
	if !ok || strings.HasSuffix(name, ".override") {
		return "", nil
	}
	files := []string{filepath.Join(corpus, e.Name())}
	override := filepath.Join(corpus, name+".override.yml")
	if _, err := os.Stat(override); err == nil {
		files = append(files, override)
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return name, files
}

// render loads and converts files as stack name: the warnings, one per
// line, then the request as indented JSON; or "error: " and the error.
// The absolute path of testdata/stacks reads $STACKS.
func render(t *testing.T, name string, files []string) string {
	t.Helper()
	abs, err := filepath.Abs(stacksDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if files[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	var out string
	p, err := Load(context.Background(), LoadOptions{Files: files, Env: corpusEnv, Name: name})
	if err == nil {
		out, err = convertAndFormat(t, p, name)
	}
	if err != nil {
		out = "error: " + err.Error() + "\n"
	}
	return strings.ReplaceAll(out, abs, "$STACKS")
}

func convertAndFormat(t *testing.T, p *types.Project, name string) (string, error) {
	req, warnings, err := Convert(p, name)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, w := range warnings {
		b.WriteString("warning: " + w + "\n")
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	// protojson's spacing is deliberately unstable; json.Indent fixes it.
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	b.Write(buf.Bytes())
	b.WriteString("\n")
	return b.String(), nil
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./stack -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./stack -update rewrites it; review the diff)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"words", true},
		{"my-stack_2", true},
		{"0day", true},
		{"", false},
		{"Words", false},
		{"_words", false},
		{"-words", false},
		{"my.stack", false},
		{"my stack", false},
		{"wörds", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "lower-case letters, digits, '_' and '-'") {
			t.Errorf("ValidateName(%q) = %q; the error should say which names are valid", tc.name, err)
		}
	}
}
