package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"shoal/internal/imagetar"
	shoalpb "shoal/proto"
	"shoal/worker/images"
	"shoal/worker/volumes"
)

// tarStore is an images.Store that reads the docker-archive's manifest and
// keeps nothing else; the real one is the containerd runtime's.
type tarStore struct{ loaded []*shoalpb.Image }

func (s *tarStore) Import(_ context.Context, r io.Reader) ([]*shoalpb.Image, error) {
	tr := tar.NewReader(r)
	var out []*shoalpb.Image
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %v: %w", err, images.ErrInvalidArchive)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var manifest []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
			return nil, err
		}
		for _, m := range manifest {
			for _, tag := range m.RepoTags {
				out = append(out, &shoalpb.Image{Name: "docker.io/library/" + tag, Digest: "sha256:0123456789abcdef", Size: 2_500_000})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no manifest.json: %w", images.ErrInvalidArchive)
	}
	s.loaded = append(s.loaded, out...)
	return out, nil
}

func (s *tarStore) ListImages(context.Context) ([]*shoalpb.Image, error) { return s.loaded, nil }

func (s *tarStore) ExportImage(context.Context, string, io.Writer) error {
	return errors.New("not used")
}

// fakeDaemon serves Images (with store, unless nil) and Volumes on a unix
// socket, as a node's local socket does, and returns its -H.
func fakeDaemon(t *testing.T, store images.Store, vols *volumes.Store, usedBy map[string][]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	shoalpb.RegisterImagesServer(srv, images.NewServer(images.Config{NodeID: "node1", Store: store}))
	shoalpb.RegisterVolumesServer(srv, volumes.NewServer(vols, func() map[string][]string { return usedBy }))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock
}

func runCLI(host string, args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"-H", host}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestImageLoadAndLs(t *testing.T) {
	vols, err := volumes.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := fakeDaemon(t, &tarStore{}, vols, nil)
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "web.tar")
	if err := imagetar.WriteFile(tarPath, imagetar.Image{Name: "web:v1", Files: []imagetar.File{{Path: "bin/web", Mode: 0o755, Data: bytes.Repeat([]byte("x"), 3<<20)}}}); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(host, "image", "load", "-i", tarPath)
	if err != nil || out != "Loaded image: docker.io/library/web:v1\n" {
		t.Fatalf("image load: %q, %v", out, err)
	}
	out, err = runCLI(host, "image", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NODE IMAGE DIGEST SIZE CREATED" ||
		strings.Join(strings.Fields(lines[1]), " ") != "node1 docker.io/library/web:v1 0123456789ab 2.5MB N/A" {
		t.Fatalf("image ls:\n%s%v", out, err)
	}

	// A tar that is no image archive reaches the store, which refuses it.
	notImage := filepath.Join(dir, "other.tar")
	f, _ := os.Create(notImage)
	tw := tar.NewWriter(f)
	_ = tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 2})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.Close()
	f.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", filepath.Join(dir, "nosuch.tar")}, "-i " + filepath.Join(dir, "nosuch.tar") + ": open"},
		{[]string{"-i", dir}, "is a directory"},
		{[]string{"-i", filepath.Join(dir, "garbage")}, "is not a tar archive"},
		{[]string{"-i", notImage}, "no manifest.json"},
	} {
		_ = os.WriteFile(filepath.Join(dir, "garbage"), []byte("not a tar at all"), 0o600)
		if _, err := runCLI(host, append([]string{"image", "load"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("image load %q: got %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}

func TestImageLoadWithoutImages(t *testing.T) {
	vols, _ := volumes.NewStore(t.TempDir())
	host := fakeDaemon(t, nil, vols, nil)
	tarPath := filepath.Join(t.TempDir(), "web.tar")
	if err := imagetar.WriteFile(tarPath, imagetar.Image{Name: "web:v1", Files: []imagetar.File{{Path: "f", Data: bytes.Repeat([]byte("y"), 4<<20)}}}); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(host, "image", "load", "-i", tarPath)
	if err == nil || err.Error() != "this node runs the process runtime, which has no images; start it with --runtime containerd" {
		t.Fatalf("got %v", err)
	}
	out, err := runCLI(host, "image", "ls")
	if err != nil || strings.Join(strings.Fields(out), " ") != "NODE IMAGE DIGEST SIZE CREATED" {
		t.Fatalf("image ls with no images: %q, %v", out, err)
	}
}

func TestVolumeCommands(t *testing.T) {
	vols, err := volumes.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := fakeDaemon(t, nil, vols, map[string][]string{"db": {"task1"}})
	out, err := runCLI(host, "volume", "ls")
	if err != nil || strings.Join(strings.Fields(out), " ") != "VOLUME NAME TASKS CREATED" {
		t.Fatalf("volume ls of none: %q, %v", out, err)
	}
	for _, name := range []string{"db", "cache"} {
		if _, err := vols.Ensure(name); err != nil {
			t.Fatal(err)
		}
	}
	out, _ = runCLI(host, "volume", "ls")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "cache ") || !strings.HasPrefix(lines[2], "db ") {
		t.Fatalf("volume ls:\n%s", out)
	}
	out, err = runCLI(host, "volume", "inspect", "db")
	var got []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0]["name"] != "db" || got[0]["mountpoint"] == nil {
		t.Fatalf("volume inspect db: %s %v", out, err)
	}
	_, err = runCLI(host, "volume", "rm", "nosuch", "db", "cache")
	for _, want := range []string{"no such volume: nosuch", "volume db is in use by task(s) task1; remove the service first or use --force"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("volume rm: got %v, want it to mention %q", err, want)
		}
	}
	if out, _ := runCLI(host, "volume", "ls", "-q"); out != "db\n" {
		t.Fatalf("after rm, volume ls -q: %q (cache should be gone, db kept)", out)
	}
	if out, err := runCLI(host, "volume", "rm", "-f", "db"); err != nil || out != "db\n" {
		t.Fatalf("volume rm -f db: %q, %v", out, err)
	}
}
