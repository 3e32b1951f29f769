// Package volumes keeps a node's named volumes: directories under the data
// dir that tasks mount and that outlive the tasks. A volume is created the
// first time a task on the node mounts it (Ensure) and lives until removed;
// each node has its own, as with Docker's local driver.
//
// Layout: <data-dir>/volumes/<name>/_data is what tasks mount, beside it
// meta.json records when the volume was created.
package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"
)

// Dir is the folder of the volumes under a node's data dir.
const Dir = "volumes"

const (
	dataDir  = "_data"
	metaFile = "meta.json"
	// maxNameLen keeps a name a valid single path element everywhere.
	maxNameLen = 255
)

var (
	// ErrInvalidName is wrapped by Ensure for a name a volume cannot have.
	ErrInvalidName = errors.New("invalid volume name")
	// ErrNotFound is wrapped by Inspect and Remove for an unknown volume.
	ErrNotFound = errors.New("no such volume")
)

// validName is Docker's rule, so stack files that work there work here.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Volume is one named volume.
type Volume struct {
	Name string
	// Mountpoint is the host directory that tasks mount.
	Mountpoint string
	CreatedAt  time.Time
}

type meta struct {
	CreatedAt time.Time `json:"created_at"`
}

// Store keeps the volumes of one node. It is safe for concurrent use.
type Store struct {
	dir string
	// mu orders Ensure and Remove of the same volume: a volume being
	// removed is never handed out half gone.
	mu sync.Mutex
}

// NewStore returns the store of the node whose data dir is dataDir, creating
// its folder.
func NewStore(dataDir string) (*Store, error) {
	dir := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return &Store{dir: dir}, nil
}

// ValidateName returns an error wrapping ErrInvalidName when name cannot be a
// volume's name.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalidName)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w %q: longer than %d characters", ErrInvalidName, name, maxNameLen)
	case !validName.MatchString(name):
		return fmt.Errorf("%w %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", ErrInvalidName, name)
	}
	return nil
}

// Ensure returns the host directory of the named volume, creating the volume
// if it does not exist yet.
func (s *Store) Ensure(name string) (hostPath string, err error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data := filepath.Join(s.dir, name, dataDir)
	metaPath := filepath.Join(s.dir, name, metaFile)
	if _, err := os.Stat(metaPath); err == nil {
		return data, nil
	}
	// Without its metadata the volume does not exist: whatever is left is
	// from a removal that crashed halfway and must not reappear in it.
	if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	// World-searchable: a task running as another user must reach its
	// data; the data directory's own mode is the image's or the task's.
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	b, err := json.Marshal(meta{CreatedAt: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	// The metadata file is written last and atomically: its presence is
	// what makes a volume exist, so a crash halfway leaves no half volume.
	tmp := metaPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.Rename(tmp, metaPath); err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	return data, nil
}

// Inspect returns the named volume, or an error wrapping ErrNotFound.
func (s *Store) Inspect(name string) (Volume, error) {
	if ValidateName(name) != nil {
		return Volume{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return Volume{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %s: %w", name, metaFile, err)
	}
	return Volume{Name: name, Mountpoint: filepath.Join(s.dir, name, dataDir), CreatedAt: m.CreatedAt}, nil
}

// List returns every volume, sorted by name. A volume whose metadata cannot
// be read is listed with a zero CreatedAt rather than hidden.
func (s *Store) List() ([]Volume, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []Volume
	for _, e := range entries {
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		v, err := s.Inspect(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // being created or removed
		}
		if err != nil {
			v = Volume{Name: e.Name(), Mountpoint: filepath.Join(s.dir, e.Name(), dataDir)}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Volume) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// Remove deletes the named volume and its data, or returns an error wrapping
// ErrNotFound. Whether tasks still use it is the caller's to check.
func (s *Store) Remove(name string) error {
	if _, err := s.Inspect(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := filepath.Join(s.dir, name)
	// The metadata goes first so that a volume half deleted by a crash is
	// no longer listed, and Ensure starts it empty.
	if err := os.Remove(filepath.Join(dir, metaFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}
