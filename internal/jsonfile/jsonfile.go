// Package jsonfile reads and atomically replaces the small JSON records that
// the runtimes and the task network keep on disk for a later agent.
//
// Records are not synced to the disk: they must outlive the agent, whose
// crash leaves the page cache intact, not the machine, whose crash ends the
// tasks and namespaces they describe.
package jsonfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Read decodes the JSON file at path into v. A missing file gives an error
// for which errors.Is(err, os.ErrNotExist) holds.
func Read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Write replaces path with v encoded as JSON, atomically: readers, and a
// later agent after a crash, see the old file or the whole new one. Writes
// of one path may run concurrently; each uses its own temporary file.
func Write(path string, v any, perm os.FileMode) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
