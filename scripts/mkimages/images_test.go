package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

var shared struct {
	once    sync.Once
	dir     string
	results []Result
	err     error
}

// sharedBuild is one build of v1 and v2 that the tests only read, since a
// build takes seconds.
func sharedBuild(t *testing.T) (string, []Result) {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "mkimages-test-")
		if shared.err == nil {
			shared.results, shared.err = Build(context.Background(), shared.dir, []string{"v1", "v2"})
		}
	})
	if shared.err != nil {
		t.Fatalf("build the images: %v", shared.err)
	}
	return shared.dir, shared.results
}

// TestBuildIsReproducible builds the images twice into different
// directories: every tar must come out byte for byte the same.
func TestBuildIsReproducible(t *testing.T) {
	a, first := sharedBuild(t)
	b := t.TempDir()
	if _, err := Build(context.Background(), b, []string{"v1", "v2"}); err != nil {
		t.Fatal(err)
	}
	if len(first) != 2*len(Apps) {
		t.Fatalf("built %d images, want %d", len(first), 2*len(Apps))
	}
	for _, r := range first {
		if !r.Written {
			t.Errorf("%s: not written into an empty directory", r.Name)
		}
		x, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, filepath.Base(r.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s: two builds differ", r.Name)
		}
	}
	v1, _ := os.ReadFile(filepath.Join(a, "words-web-v1.tar"))
	v2, _ := os.ReadFile(filepath.Join(a, "words-web-v2.tar"))
	if bytes.Equal(v1, v2) {
		t.Errorf("words-web v1 and v2 are the same image")
	}
}

// TestBuildSkipsWhatIsUpToDate: a second build into the same directory
// writes nothing; a missing tar or changed stamp makes it build again.
func TestBuildSkipsWhatIsUpToDate(t *testing.T) {
	built, _ := sharedBuild(t)
	out := t.TempDir()
	for _, name := range []string{"words-db-v1.tar", "words-app-v1.tar", "words-web-v1.tar", ".v1.inputs"} {
		data, err := os.ReadFile(filepath.Join(built, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tarPath := filepath.Join(out, "words-app-v1.tar")
	st, err := os.Stat(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(context.Background(), out, []string{"v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if r.Written {
			t.Errorf("%s: rewritten although nothing changed", r.Name)
		}
	}
	if st2, _ := os.Stat(tarPath); !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("%s: modified although nothing changed", tarPath)
	}

	if err := os.Remove(tarPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stampPath(out, "v1"), []byte("other inputs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := Build(context.Background(), out, []string{"v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rebuilt {
		// The missing tar is written again; the others keep their bytes.
		if want := r.Path == tarPath; r.Written != want {
			t.Errorf("%s: written=%v after removing %s, want %v", r.Name, r.Written, filepath.Base(tarPath), want)
		}
	}
	if _, err := os.Stat(tarPath); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRefusesBadVersion(t *testing.T) {
	for _, v := range [][]string{nil, {"v1", "bad/tag"}, {"-x"}} {
		if _, err := Build(context.Background(), t.TempDir(), v); !errors.Is(err, ErrBadVersion) {
			t.Errorf("Build with versions %q: %v, want ErrBadVersion", v, err)
		}
	}
}

// TestImageConfig reads a built tar back: the tag, entrypoint, health check,
// ports, env and layer contents are what `shoal image load` and the runtime
// rely on.
func TestImageConfig(t *testing.T) {
	out, _ := sharedBuild(t)
	img := readImage(t, filepath.Join(out, "words-db-v2.tar"))
	if !slices.Equal(img.RepoTags, []string{"words-db:v2"}) {
		t.Errorf("RepoTags = %q, want [words-db:v2]", img.RepoTags)
	}
	c := img.Config.Config
	if !slices.Equal(c.Entrypoint, []string{"/words-db"}) {
		t.Errorf("Entrypoint = %q", c.Entrypoint)
	}
	if hc := c.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/words-db", "-healthcheck"}) ||
		hc.Interval != 2*time.Second || hc.Timeout != 2*time.Second || hc.Retries != 3 {
		t.Errorf("Healthcheck = %+v, want CMD /words-db -healthcheck every 2s, timeout 2s, 3 retries", hc)
	}
	if _, ok := c.ExposedPorts["7000/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts = %v, want 7000/tcp", c.ExposedPorts)
	}
	if !slices.Equal(c.Env, []string{"PORT=7000", "DATA_DIR=/data"}) {
		t.Errorf("Env = %q", c.Env)
	}
	if c.StopSignal != "SIGTERM" || c.Labels["org.opencontainers.image.version"] != "v2" {
		t.Errorf("StopSignal = %q, Labels = %v", c.StopSignal, c.Labels)
	}
	if img.Config.OS != "linux" || img.Config.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", img.Config.OS, img.Config.Architecture)
	}
	for name, want := range map[string]struct {
		typ  byte
		mode int64
	}{"words-db": {tar.TypeReg, 0o755}, "data/": {tar.TypeDir, 0o755}, "tmp/": {tar.TypeDir, 0o1777}, "etc/nsswitch.conf": {tar.TypeReg, 0o644}} {
		h, ok := img.Layer[name]
		if !ok || h.Typeflag != want.typ || h.Mode != want.mode {
			t.Errorf("layer entry %s = %+v, want type %c mode %o", name, h, want.typ, want.mode)
		}
	}
	if img.Layer["words-db"].Size < 1<<20 {
		t.Errorf("words-db binary is %d bytes", img.Layer["words-db"].Size)
	}
}

type imageTar struct {
	RepoTags []string
	Config   struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			Entrypoint   []string
			Env          []string
			ExposedPorts map[string]struct{}
			StopSignal   string
			Labels       map[string]string
			Healthcheck  *struct {
				Test     []string
				Interval time.Duration
				Timeout  time.Duration
				Retries  int
			}
		} `json:"config"`
	}
	Layer map[string]*tar.Header
}

// readImage reads a docker-archive tar: manifest, config and layer headers.
func readImage(t *testing.T, path string) imageTar {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		t.Fatalf("%s: manifest.json %s: %v", path, files["manifest.json"], err)
	}
	img := imageTar{RepoTags: manifest[0].RepoTags, Layer: map[string]*tar.Header{}}
	if err := json.Unmarshal(files[manifest[0].Config], &img.Config); err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	lr := tar.NewReader(bytes.NewReader(files[manifest[0].Layers[0]]))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: layer: %v", path, err)
		}
		img.Layer[h.Name] = h
	}
	return img
}
