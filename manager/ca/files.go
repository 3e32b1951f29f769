package ca

import (
	"fmt"
	"os"
	"path/filepath"
)

// File names inside a credentials directory (<data-dir>/certs).
const (
	RootCertFile = "ca.crt"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// LoadCredentials reads dir/ca.crt, dir/node.crt and dir/node.key and
// validates them like NewCredentials. A missing file gives an error wrapping
// fs.ErrNotExist, so callers can tell "never joined" from "corrupt".
func LoadCredentials(dir string) (*Credentials, error) {
	var data [3][]byte
	for i, name := range []string{RootCertFile, NodeCertFile, NodeKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load node credentials from %s: %w", dir, err)
		}
		data[i] = b
	}
	c, err := NewCredentials(data[1], data[2], data[0])
	if err != nil {
		return nil, fmt.Errorf("load node credentials from %s: %w", dir, err)
	}
	return c, nil
}

// Save writes the current credentials to dir (created 0700 if needed, and
// set to 0700): ca.crt and node.crt 0644, node.key 0600. Each file is
// replaced atomically (temporary file, fsync, rename). All three are
// written before any is renamed, so a crash leaves at worst a certificate
// next to the previous key, which LoadCredentials reports as ErrBadKey.
func (c *Credentials) Save(dir string) error {
	st := c.current.Load()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save node credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("save node credentials: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RootCertFile, st.rootPEM, 0o644},
		{NodeKeyFile, st.keyPEM, 0o600},
		{NodeCertFile, st.certPEM, 0o644},
	}
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, tmp := range tmps {
			_ = os.Remove(tmp) // already renamed on success
		}
	}()
	for _, f := range files {
		tmp, err := writeTemp(dir, f.name, f.data, f.mode)
		if err != nil {
			return fmt.Errorf("save node credentials: %w", err)
		}
		tmps = append(tmps, tmp)
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("save node credentials: %w", err)
		}
	}
	return syncDir(dir)
}

// writeTemp writes data to a new temporary file in dir with mode and syncs
// it. It returns the temporary file's path.
func writeTemp(dir, name string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	// CreateTemp makes the file 0600; set the final mode before any data.
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	return tmp, nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save node credentials: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save node credentials: sync %s: %w", dir, err)
	}
	return nil
}
