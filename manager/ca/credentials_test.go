package ca_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/manager/ca"
)

func TestCredentialsSaveLoad(t *testing.T) {
	root := newRoot(t, "cluster-a")
	creds := newCreds(t, root, "m1", ca.RoleManager)
	dir := filepath.Join(t.TempDir(), "certs")
	// An existing, too open directory is tightened.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := creds.Save(dir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	// Saving twice replaces the files in place.
	if err := creds.Save(dir); err != nil {
		t.Fatalf("second Save: %v", err)
	}

	modes := []struct {
		name string
		want fs.FileMode
	}{
		{".", 0o700 | fs.ModeDir},
		{"ca.crt", 0o644},
		{"node.crt", 0o644},
		{"node.key", 0o600},
	}
	for _, m := range modes {
		info, err := os.Stat(filepath.Join(dir, m.name))
		if err != nil {
			t.Fatalf("stat %s: %v", m.name, err)
		}
		if got := info.Mode(); got != m.want {
			t.Fatalf("%s mode = %v, want %v", m.name, got, m.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	if len(entries) != 3 {
		t.Fatalf("dir holds %d entries, want 3 (temporary files left behind?)", len(entries))
	}

	loaded, err := ca.LoadCredentials(dir)
	if err != nil {
		t.Fatalf("LoadCredentials: %v", err)
	}
	if got, want := loaded.Identity(), creds.Identity(); got != want {
		t.Fatalf("loaded identity = %+v, want %+v", got, want)
	}
	if !bytes.Equal(loaded.Leaf().Raw, creds.Leaf().Raw) {
		t.Fatalf("loaded certificate differs from the saved one")
	}
	if got, want := loaded.RootFingerprint(), root.Fingerprint(); got != want {
		t.Fatalf("loaded root fingerprint = %q, want %q", got, want)
	}
	if !bytes.Equal(loaded.RootPEM(), root.CertPEM) {
		t.Fatalf("loaded RootPEM differs from the root's CertPEM")
	}
	if _, err := loaded.Leaf().Verify(x509Opts(loaded)); err != nil {
		t.Fatalf("loaded leaf does not verify against RootPool: %v", err)
	}
}

func TestLoadCredentialsMissingFile(t *testing.T) {
	root := newRoot(t, "cluster-a")
	for _, name := range []string{"ca.crt", "node.crt", "node.key"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := newCreds(t, root, "n1", ca.RoleWorker).Save(dir); err != nil {
				t.Fatalf("Save: %v", err)
			}
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatalf("remove: %v", err)
			}
			_, err := ca.LoadCredentials(dir)
			checkErr(t, "LoadCredentials", err, fs.ErrNotExist)
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name the missing file %s", err, name)
			}
		})
	}
}

func TestNewCredentialsRefuses(t *testing.T) {
	a := newRoot(t, "cluster-a")
	b := newRoot(t, "cluster-b")
	certA, keyA := issue(t, a, "n1", ca.RoleWorker)
	certB, keyB := issue(t, b, "n1", ca.RoleWorker)
	_, otherKeyA := issue(t, a, "n2", ca.RoleWorker)
	tests := []struct {
		name      string
		cert, key []byte
		root      []byte
		want      error
	}{
		{"certificate from another cluster's CA", certB, keyB, a.CertPEM, ca.ErrUntrusted},
		{"key of another certificate", certA, otherKeyA, a.CertPEM, ca.ErrBadKey},
		{"node certificate as root", certA, keyA, certA, ca.ErrBadCertificate},
		{"empty certificate", nil, keyA, a.CertPEM, ca.ErrBadCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.NewCredentials(tt.cert, tt.key, tt.root)
			checkErr(t, "NewCredentials", err, tt.want)
		})
	}
}

func TestReplace(t *testing.T) {
	a := newRoot(t, "cluster-a")
	b := newRoot(t, "cluster-b")
	certB, keyB := issue(t, b, "w1", ca.RoleWorker)
	otherNode, otherKey := issue(t, a, "w2", ca.RoleWorker)
	promoted, promotedKey := issue(t, a, "w1", ca.RoleManager)
	_, strayKey := issue(t, a, "w1", ca.RoleWorker)
	tests := []struct {
		name      string
		cert, key []byte
		want      error
		wantRole  ca.Role
	}{
		{"certificate from another cluster's CA", certB, keyB, ca.ErrUntrusted, ca.RoleWorker},
		{"certificate of another node", otherNode, otherKey, ca.ErrInvalidIdentity, ca.RoleWorker},
		{"key that does not match", promoted, strayKey, ca.ErrBadKey, ca.RoleWorker},
		{"promotion to manager", promoted, promotedKey, nil, ca.RoleManager},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := newCreds(t, a, "w1", ca.RoleWorker)
			before := creds.Leaf()
			err := creds.Replace(tt.cert, tt.key)
			checkErr(t, "Replace", err, tt.want)
			if got := creds.Identity().Role; got != tt.wantRole {
				t.Fatalf("role after Replace = %s, want %s", got, tt.wantRole)
			}
			if changed := creds.Leaf() != before; changed != (tt.want == nil) {
				t.Fatalf("leaf changed = %v, want %v", changed, tt.want == nil)
			}
		})
	}
}
