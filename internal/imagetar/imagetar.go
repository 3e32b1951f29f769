// Package imagetar writes container images as docker-archive tars (the
// format of `docker save`), which containerd imports: shoal's tests and demo
// apps are built into images this way, with no registry and no Docker
// engine. Output is deterministic: the same files give the same digests.
package imagetar

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// epoch is every file's and the image's time, so builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

// Image is one image: a single layer of files plus its config.
type Image struct {
	// Name is the reference the image is imported as ("words-web:v1").
	Name string
	// Files are the layer's regular files; their parent directories are
	// created as needed.
	Files []File
	// Dirs are extra empty directories ("tmp", "data").
	Dirs []string

	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	Labels       map[string]string
	StopSignal   string
	ExposedPorts []string // "8080/tcp"
	Healthcheck  *Healthcheck
}

// File is one regular file of the layer.
type File struct {
	Path string // inside the image, without a leading slash
	Mode int64  // permission bits, e.g. 0o755
	Data []byte
}

// Healthcheck is Docker's HEALTHCHECK, kept in the image config.
type Healthcheck struct {
	Test        []string      `json:"Test"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// WriteFile writes img as a docker-archive tar at path.
func WriteFile(path string, img Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, img); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// Write writes img as a docker-archive tar to w.
func Write(w io.Writer, img Image) error {
	if img.Name == "" {
		return errors.New("imagetar: the image needs a name")
	}
	layer, err := layerTar(img)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, err := configJSON(img, layerDigest)
	if err != nil {
		return err
	}
	configName := hex.EncodeToString(sha(config)) + ".json"
	layerName := hex.EncodeToString(sha(layer)) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{img.Name},
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {layerName, layer}, {"manifest.json", manifest}} {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerTar is the uncompressed layer: directories first, then files, sorted.
func layerTar(img Image) ([]byte, error) {
	dirs := map[string]bool{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range img.Dirs {
		d = strings.Trim(d, "/")
		dirs[d] = true
		addParents(d)
	}
	files := append([]File(nil), img.Files...)
	for i := range files {
		files[i].Path = strings.TrimPrefix(files[i].Path, "/")
		if files[i].Path == "" {
			return nil, errors.New("imagetar: a file has no path")
		}
		addParents(files[i].Path)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range names {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := writeFile(tw, f.Path, mode, f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func configJSON(img Image, layerDigest string) ([]byte, error) {
	cfg := map[string]any{}
	set := func(key string, v any, empty bool) {
		if !empty {
			cfg[key] = v
		}
	}
	set("Entrypoint", img.Entrypoint, len(img.Entrypoint) == 0)
	set("Cmd", img.Cmd, len(img.Cmd) == 0)
	set("Env", img.Env, len(img.Env) == 0)
	set("WorkingDir", img.WorkingDir, img.WorkingDir == "")
	set("User", img.User, img.User == "")
	set("Labels", img.Labels, len(img.Labels) == 0)
	set("StopSignal", img.StopSignal, img.StopSignal == "")
	set("Healthcheck", img.Healthcheck, img.Healthcheck == nil)
	if len(img.ExposedPorts) > 0 {
		ports := map[string]struct{}{}
		for _, p := range img.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			ports[p] = struct{}{}
		}
		cfg["ExposedPorts"] = ports
	}
	return json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "shoal imagetar"}},
	})
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("imagetar: %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func digest(b []byte) string { return "sha256:" + hex.EncodeToString(sha(b)) }
