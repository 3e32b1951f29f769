package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// inputDirs hold every source that can change an image: the apps and the
// package they share (testdata/apps/internal/serve, inside the first
// directory), this program (it decides the image config) and the tar
// writer. The apps use only the standard library, so go.mod and the
// toolchain are the rest.
var inputDirs = []string{"testdata/apps", "scripts/mkimages", "internal/imagetar"}

// inputsHash digests everything a version's images are made from: the
// sources above, go.mod, and the go environment (toolchain version and the
// settings that change code generation).
func inputsHash(root, goenv, version string) (string, error) {
	h := sha256.New()
	h.Write([]byte(version + "\x00" + goenv + "\x00"))
	add := func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		h.Write([]byte(rel + "\x00"))
		h.Write([]byte(hex.EncodeToString(sum(data)) + "\x00"))
		return nil
	}
	if err := add(filepath.Join(root, "go.mod")); err != nil {
		return "", err
	}
	for _, dir := range inputDirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") {
				return err
			}
			return add(path)
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// stampPath records the inputs hash of version's last build in out.
func stampPath(out, version string) string {
	return filepath.Join(out, "."+version+".inputs")
}

// upToDate reports whether out holds version's tars built from the inputs
// that hash to want.
func upToDate(out, version, want string, tars []string) bool {
	got, err := os.ReadFile(stampPath(out, version))
	if err != nil || strings.TrimSpace(string(got)) != want {
		return false
	}
	for _, t := range tars {
		if _, err := os.Stat(t); err != nil {
			return false
		}
	}
	return true
}
