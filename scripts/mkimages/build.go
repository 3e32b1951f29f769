package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"shoal/internal/imagetar"
)

// App is one demo app and how its image is configured.
type App struct {
	Name  string
	Port  string   // the default PORT, also the exposed port
	Env   []string // defaults besides PORT
	Dirs  []string // empty directories besides tmp and etc
	Title string
}

// Apps are the demo apps under testdata/apps.
var Apps = []App{
	{Name: "words-db", Port: "7000", Env: []string{"DATA_DIR=/data"}, Dirs: []string{"data"}, Title: "shoal demo word store"},
	{Name: "words-app", Port: "8080", Title: "shoal demo word API"},
	{Name: "words-web", Port: "80", Title: "shoal demo web front"},
}

// ErrBadVersion is a version that cannot be an image tag.
var ErrBadVersion = errors.New("bad version")

// tagRE is Docker's tag syntax.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Result is one image tar.
type Result struct {
	Name    string // "words-web:v1"
	Path    string
	Written bool // false: the tar already had these bytes
}

// Build builds every app for every version into out. Versions are built in
// parallel; each is one `go build` of the three apps.
func Build(ctx context.Context, out string, versions []string) ([]Result, error) {
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: -version names no version", ErrBadVersion)
	}
	for _, v := range versions {
		if !tagRE.MatchString(v) {
			return nil, fmt.Errorf("%w: %q: a version is an image tag: letters, digits, '_', '.', '-', at most 128", ErrBadVersion, v)
		}
	}
	root, goenv, err := goEnv(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	removeStaleTemps(out)
	results := make([][]Result, len(versions))
	errs := make([]error, len(versions))
	var wg sync.WaitGroup
	for i, v := range versions {
		wg.Go(func() { results[i], errs[i] = buildVersion(ctx, root, goenv, out, v) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []Result
	for _, rs := range results {
		all = append(all, rs...)
	}
	return all, nil
}

// buildVersion builds version's images unless the stamp in out says they
// were built from the same inputs: a warm run then costs a hash of the
// sources instead of three links.
func buildVersion(ctx context.Context, root, goenv, out, version string) ([]Result, error) {
	var results []Result
	var paths []string
	for _, app := range Apps {
		p := filepath.Join(out, app.Name+"-"+version+".tar")
		paths = append(paths, p)
		results = append(results, Result{Name: app.Name + ":" + version, Path: p})
	}
	inputs, err := inputsHash(root, goenv, version)
	if err != nil {
		return nil, err
	}
	if upToDate(out, version, inputs, paths) {
		return results, nil
	}
	// A build that fails halfway must not leave a stamp that vouches for it.
	os.Remove(stampPath(out, version))
	bin, err := os.MkdirTemp("", "mkimages-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	if err := BuildBinaries(ctx, root, version, bin); err != nil {
		return nil, err
	}
	for i, app := range Apps {
		data, err := os.ReadFile(filepath.Join(bin, app.Name))
		if err != nil {
			return nil, err
		}
		img := ImageOf(app, version, data)
		results[i].Written, err = writeIfChanged(results[i].Path, img)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.Name, err)
		}
	}
	if err := os.WriteFile(stampPath(out, version), []byte(inputs+"\n"), 0o644); err != nil {
		return nil, err
	}
	return results, nil
}

// BuildBinaries builds every app of version into dir as static linux/amd64
// binaries named after the app. The build is reproducible: no paths, VCS
// stamp or build ID end up in the binary.
func BuildBinaries(ctx context.Context, root, version, dir string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version=" + version, "-o", dir + string(filepath.Separator)}
	for _, app := range Apps {
		args = append(args, "./testdata/apps/"+app.Name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	// imagetar writes linux/amd64 images. The caller's GOFLAGS (say -race,
	// which needs cgo) must not change what goes into an image.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build of the %s apps in %s: %w\n%s", version, root, err, stderr.String())
	}
	return nil
}

// ImageOf is app's image for version with binary as its only program. The
// image has no shell: the binary's -healthcheck flag is the health check.
func ImageOf(app App, version string, binary []byte) imagetar.Image {
	bin := "/" + app.Name
	return imagetar.Image{
		Name: app.Name + ":" + version,
		Files: []imagetar.File{
			{Path: app.Name, Mode: 0o755, Data: binary},
			// Go's resolver reads this; the runtime mounts hosts and resolv.conf.
			{Path: "etc/nsswitch.conf", Mode: 0o644, Data: []byte("hosts: files dns\n")},
		},
		Dirs:         append([]string{"tmp", "etc"}, app.Dirs...),
		Entrypoint:   []string{bin},
		Env:          append([]string{"PORT=" + app.Port}, app.Env...),
		ExposedPorts: []string{app.Port + "/tcp"},
		StopSignal:   "SIGTERM",
		Labels: map[string]string{
			"org.opencontainers.image.title":   app.Title,
			"org.opencontainers.image.version": version,
		},
		Healthcheck: &imagetar.Healthcheck{
			Test:     []string{"CMD", bin, "-healthcheck"},
			Interval: 2 * time.Second,
			Timeout:  2 * time.Second,
			Retries:  3,
		},
	}
}

// writeIfChanged writes img to path unless path already holds those bytes,
// so file times stay put and readers never see a half-written tar (the new
// tar is renamed into place).
func writeIfChanged(path string, img imagetar.Image) (bool, error) {
	var buf bytes.Buffer
	if err := imagetar.Write(&buf, img); err != nil {
		return false, err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, buf.Bytes()) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	return true, os.Rename(tmp.Name(), path)
}

// goEnv returns the directory of shoal's go.mod, where the apps' paths
// start, and the go settings that change what a build produces.
func goEnv(ctx context.Context) (root, env string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD", "GOVERSION", "GOFLAGS", "GOAMD64", "GOEXPERIMENT", "GOTOOLCHAIN").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env: %w", err)
	}
	gomod, rest, _ := strings.Cut(string(out), "\n")
	if gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("go env GOMOD: not inside a Go module; run mkimages from shoal's source tree")
	}
	return filepath.Dir(gomod), rest, nil
}

// removeStaleTemps deletes temporary tars that a killed run left in out. A
// run in progress may be writing one right now, so only old ones go.
func removeStaleTemps(out string) {
	temps, _ := filepath.Glob(filepath.Join(out, ".*.tar.tmp-*"))
	for _, t := range temps {
		if st, err := os.Stat(t); err == nil && time.Since(st.ModTime()) > time.Hour {
			os.Remove(t)
		}
	}
}
