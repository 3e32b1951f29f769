package testutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// DemoApps and DemoVersions are the demo images DemoImage returns: the apps
// under testdata/apps, each built as v1 and as v2 (which looks different).
var (
	DemoApps     = []string{"words-db", "words-app", "words-web"}
	DemoVersions = []string{"v1", "v2"}
)

// imagesTimeout bounds building every demo image from a cold Go cache on a
// busy machine.
const imagesTimeout = 10 * time.Minute

var demoImages struct {
	once sync.Once
	dir  string
	err  error
}

// DemoImage returns the path of the docker-archive tar of a demo app
// ("words-web") at a version ("v1"), named "<app>:<version>"; `shoal image
// load -i PATH` imports it as docker.io/library/<app>:<version>. The first
// call of the test process runs scripts/mkimages, which builds all of them.
//
// The tars live in one directory per source tree under os.TempDir, so test
// processes share them and a run with unchanged sources rebuilds nothing;
// mkimages replaces a tar only by renaming a complete one into place, so
// processes building at the same time cannot see half a file.
// SHOAL_TEST_IMAGES names a directory of prebuilt tars (`make images` writes
// bin/images) to use instead.
func DemoImage(tb testing.TB, app, version string) string {
	tb.Helper()
	demoImages.once.Do(func() {
		if dir := os.Getenv("SHOAL_TEST_IMAGES"); dir != "" {
			demoImages.dir, demoImages.err = filepath.Abs(dir)
			return
		}
		demoImages.dir, demoImages.err = buildDemoImages()
	})
	if demoImages.err != nil {
		tb.Fatalf("build the demo images: %v", demoImages.err)
	}
	path := filepath.Join(demoImages.dir, app+"-"+version+".tar")
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("demo image %s:%s: %v (the demo apps are %v, the versions %v)", app, version, err, DemoApps, DemoVersions)
	}
	return path
}

func buildDemoImages() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// One cache per source tree: two checkouts must not overwrite each
	// other's images.
	key := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "shoal-demo-images-"+hex.EncodeToString(key[:6]))
	ctx, cancel := context.WithTimeout(context.Background(), imagesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./scripts/mkimages", "-q", "-out", dir, "-version", strings.Join(DemoVersions, ","))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go run ./scripts/mkimages in %s: %w\n%s", root, err, stderr.String())
	}
	return dir, nil
}
