package testutil

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestDemoImage(t *testing.T) {
	for _, app := range DemoApps {
		for _, v := range DemoVersions {
			path := DemoImage(t, app, v)
			if again := DemoImage(t, app, v); again != path {
				t.Fatalf("DemoImage(%s, %s) returned %s, then %s", app, v, path, again)
			}
			if tags := repoTags(t, path); !slices.Equal(tags, []string{app + ":" + v}) {
				t.Errorf("%s is tagged %q, want %s:%s", path, tags, app, v)
			}
		}
	}
}

func TestDemoImageUnknownFails(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		DemoImage(rec, "words-web", "v9")
	}()
	<-done
	if !strings.Contains(rec.msg, "words-web:v9") || !strings.Contains(rec.msg, "v2") {
		t.Fatalf("DemoImage of an unknown version failed with %q, want it named and the versions listed", rec.msg)
	}
}

// repoTags reads the tags from a docker-archive tar's manifest.json.
func repoTags(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no manifest.json", path)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
			t.Fatalf("%s: manifest.json: %v", path, err)
		}
		return m[0].RepoTags
	}
}
