package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"shoal/manager/ca"
	"shoal/worker/exec"
)

// Files and folders inside the data dir.
const (
	identityFile = "node.json"
	certsDir     = "certs"
	raftDir      = "raft"
	socketFile   = "shoal.sock"
)

// Identity is what a node remembers about itself between restarts. It is
// written last when a node is created, so its presence means "this data dir
// holds a node".
type Identity struct {
	NodeID        string        `json:"node_id"`
	ClusterID     string        `json:"cluster_id"`
	Role          string        `json:"role"` // "manager" or "worker"
	AdvertiseAddr string        `json:"advertise_addr"`
	ListenAddr    string        `json:"listen_addr"`
	GossipPort    int           `json:"gossip_port"`
	GossipKey     []byte        `json:"gossip_key"`
	Runtime       string        `json:"runtime"`
	Managers      []ManagerAddr `json:"managers"`
}

// ManagerAddr is a manager as the node last heard of it.
type ManagerAddr struct {
	NodeID     string `json:"node_id"`
	APIAddr    string `json:"api_addr"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// ErrNoNode means the data dir holds no node.
var ErrNoNode = errors.New("no node in data dir")

func loadIdentity(dataDir string) (*Identity, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %s: create one with 'shoal init' or 'shoal join'", ErrNoNode, dataDir)
	}
	if err != nil {
		return nil, err
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("%s: %w; the data dir is damaged", filepath.Join(dataDir, identityFile), err)
	}
	return &id, nil
}

// save writes the identity atomically (temp file + rename), mode 0600 since it
// holds the gossip key.
func (id *Identity) save(dataDir string) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, identityFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dataDir, identityFile))
}

// checkFresh refuses a data dir that already holds a node, and clears what an
// interrupted init or join may have left.
func checkFresh(dataDir string) error {
	if id, err := loadIdentity(dataDir); err == nil {
		return fmt.Errorf("data dir %s already holds node %s of cluster %s; restart it with 'shoal daemon --data-dir %s', or pick an empty --data-dir",
			dataDir, id.NodeID, id.ClusterID, dataDir)
	} else if !errors.Is(err, ErrNoNode) {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	return clearState(dataDir)
}

// clearState removes everything a node keeps in its data dir.
func clearState(dataDir string) error {
	for _, name := range []string{identityFile, certsDir, raftDir, exec.TasksDir} {
		if err := os.RemoveAll(filepath.Join(dataDir, name)); err != nil {
			return err
		}
	}
	return nil
}

func loadCreds(dataDir string) (*ca.Credentials, error) {
	creds, err := ca.LoadCredentials(filepath.Join(dataDir, certsDir))
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	return creds, nil
}
