package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateName(t *testing.T) {
	for _, name := range []string{"db", "a", "web_data", "v1.2-x", "0abc"} {
		if err := ValidateName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "-x", ".hidden", "_x", "a/b", "..", "a b", "é", strings.Repeat("a", 256)} {
		err := ValidateName(name)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: got %v, want ErrInvalidName", name, err)
		}
	}
	if err := ValidateName("a/b"); !strings.Contains(err.Error(), `"a/b"`) || !strings.Contains(err.Error(), "letters, digits") {
		t.Errorf("the error %q should name the volume and the rule", err)
	}
	if _, err := newStore(t).Ensure("../etc"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Ensure(../etc): got %v, want ErrInvalidName", err)
	}
}

func TestEnsureKeepsData(t *testing.T) {
	s := newStore(t)
	path, err := s.Ensure("db")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "_data" || filepath.Base(filepath.Dir(path)) != "db" {
		t.Fatalf("host path %s, want …/volumes/db/_data", path)
	}
	if err := os.WriteFile(filepath.Join(path, "f"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	v1, err := s.Inspect("db")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Ensure("db")
	if err != nil || again != path {
		t.Fatalf("second Ensure: %s, %v", again, err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "f")); err != nil || string(b) != "kept" {
		t.Fatalf("data after a second Ensure: %q, %v", b, err)
	}
	v2, _ := s.Inspect("db")
	if !v1.CreatedAt.Equal(v2.CreatedAt) || v1.CreatedAt.IsZero() {
		t.Fatalf("created at %v then %v", v1.CreatedAt, v2.CreatedAt)
	}
	if _, err := s.Ensure("cache"); err != nil {
		t.Fatal(err)
	}
	vols, err := s.List()
	if err != nil || len(vols) != 2 || vols[0].Name != "cache" || vols[1].Name != "db" {
		t.Fatalf("List: %v, %v", vols, err)
	}
}

func TestServer(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, name := range []string{"db", "cache", "free"} {
		if _, err := s.Ensure(name); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServer(s, func() map[string][]string {
		return map[string][]string{"db": {"t2", "t1"}, "cache": {"t3"}}
	})
	want := func(err error, code codes.Code, msg string) {
		t.Helper()
		if st, _ := status.FromError(err); err == nil || st.Code() != code || st.Message() != msg {
			t.Fatalf("got %v, want %s %q", err, code, msg)
		}
	}

	v, err := srv.Inspect(ctx, &shoalpb.InspectVolumeRequest{Name: "db"})
	if err != nil || strings.Join(v.UsedBy, ",") != "t1,t2" || v.CreatedAt == nil || v.Mountpoint == "" {
		t.Fatalf("Inspect db: %v, %v", v, err)
	}
	_, err = srv.Inspect(ctx, &shoalpb.InspectVolumeRequest{Name: "nosuch"})
	want(err, codes.NotFound, "no such volume: nosuch; 'shoal volume ls' lists this node's volumes")
	_, err = srv.Remove(ctx, &shoalpb.RemoveVolumeRequest{Name: "nosuch"})
	want(err, codes.NotFound, "no such volume: nosuch; 'shoal volume ls' lists this node's volumes")

	_, err = srv.Remove(ctx, &shoalpb.RemoveVolumeRequest{Name: "db"})
	want(err, codes.FailedPrecondition, "volume db is in use by task(s) t1, t2; remove the service first or use --force")
	if _, err := s.Inspect("db"); err != nil {
		t.Fatalf("a refused Remove removed the volume: %v", err)
	}

	if _, err := srv.Remove(ctx, &shoalpb.RemoveVolumeRequest{Name: "free"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Remove(ctx, &shoalpb.RemoveVolumeRequest{Name: "cache", Force: true}); err != nil {
		t.Fatal(err)
	}
	list, err := srv.List(ctx, &shoalpb.ListVolumesRequest{})
	if err != nil || len(list.Volumes) != 1 || list.Volumes[0].Name != "db" {
		t.Fatalf("List after removals: %v, %v", list, err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "cache")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the forced Remove left %v", err)
	}
}

// A volume whose removal crashed after its metadata went is gone: not
// listed, and created empty again by Ensure.
func TestHalfRemovedVolume(t *testing.T) {
	s := newStore(t)
	path, err := s.Ensure("db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "old"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.dir, "db", metaFile)); err != nil {
		t.Fatal(err)
	}
	if vols, _ := s.List(); len(vols) != 0 {
		t.Fatalf("listed %v", vols)
	}
	if _, err := s.Ensure("db"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(path, "old")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old data came back: %v", err)
	}
}
