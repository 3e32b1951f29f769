package containerd

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDockerCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	if u, p, err := dockerCredentials("registry-1.docker.io"); u != "" || p != "" || err != nil {
		t.Errorf("without a config file: %q %q %v", u, p, err)
	}
	cfg := `{"auths": {
		"https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
		"registry.example.com": {"auth": "bWU6cGFzczp3aXRoOmNvbG9ucw=="}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string][2]string{
		"registry-1.docker.io": {"hub", "secret"},
		"registry.example.com": {"me", "pass:with:colons"},
		"other.example.com":    {"", ""},
	} {
		u, p, err := dockerCredentials(host)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("%s: %q %q %v, want %q %q", host, u, p, err, want[0], want[1])
		}
	}
}
