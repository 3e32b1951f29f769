package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"

	"shoal/worker/runtime"
)

const fullName = "docker.io/library/" + testImage

func imageNames(t *testing.T, r *Runtime) []string {
	t.Helper()
	imgs, err := r.ListImages(ctxT(t))
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	var names []string
	for _, im := range imgs {
		names = append(names, im.Name)
	}
	return names
}

func TestImageExportImportElsewhere(t *testing.T) {
	r1 := newRuntime(t, Config{})
	imgs, err := r1.Import(ctxT(t), bytes.NewReader(appImage(t, testImage)))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(imgs) != 1 || imgs[0].Name != fullName || imgs[0].Size == 0 || !strings.HasPrefix(imgs[0].Digest, "sha256:") {
		t.Fatalf("Import = %v, want %s with a digest and size", imgs, fullName)
	}
	if names := imageNames(t, r1); !slices.Equal(names, []string{fullName}) {
		t.Errorf("ListImages = %q", names)
	}
	var tar bytes.Buffer
	if err := r1.ExportImage(ctxT(t), testImage, &tar); err != nil {
		t.Fatalf("ExportImage: %v", err)
	}
	if err := r1.ExportImage(ctxT(t), "absent:v9", io.Discard); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Errorf("ExportImage of an absent image = %v, want ErrImageNotFound", err)
	}

	r2 := newRuntime(t, Config{})
	imgs2, err := r2.Import(ctxT(t), &tar)
	if err != nil {
		t.Fatalf("Import of the export: %v", err)
	}
	if len(imgs2) != 1 || imgs2[0].Name != fullName || imgs2[0].Digest != imgs[0].Digest {
		t.Errorf("Import of the export = %v, want %s with digest %s", imgs2, fullName, imgs[0].Digest)
	}
	if st := wait(t, start(t, r2, newTask("elsewhere"))); !st.Success() {
		t.Errorf("task from the re-imported image: %+v", st)
	}
}

func TestImportCorruptTar(t *testing.T) {
	r := newRuntime(t, Config{})
	good := appImage(t, testImage)
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"garbage":   bytes.Repeat([]byte("not a tar "), 1000),
		"empty":     nil,
	} {
		_, err := r.Import(ctxT(t), bytes.NewReader(data))
		if err == nil || !strings.Contains(err.Error(), "import image") {
			t.Errorf("%s: Import = %v, want an error saying the import failed", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if names := imageNames(t, r); len(names) != 0 {
		t.Errorf("images after failed imports: %q", names)
	}
	var blobs []string
	_ = r.c.ContentStore().Walk(nsCtx(ctxT(t)), func(info content.Info) error {
		blobs = append(blobs, info.Digest.String())
		return nil
	})
	if len(blobs) != 0 {
		t.Errorf("content left by failed imports: %q", blobs)
	}
}

// fakeSource is the cluster as Prepare sees it: the images other nodes have.
type fakeSource struct {
	tars  map[string][]byte
	asked []string
}

func (f *fakeSource) fetch(_ context.Context, name string) (io.ReadCloser, error) {
	f.asked = append(f.asked, name)
	b, ok := f.tars[name]
	if !ok {
		return nil, fmt.Errorf("%w: no node has %s", runtime.ErrImageNotFound, name)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestPrepareFetchesFromCluster(t *testing.T) {
	src := &fakeSource{tars: map[string][]byte{fullName: appImage(t, testImage)}}
	r := newRuntime(t, Config{Images: src.fetch})
	task := newTask("fetched", "echo", "0", "fetched")
	h := start(t, r, task)
	if st := wait(t, h); !st.Success() {
		t.Errorf("fetched image's task: %+v", st)
	}
	if !slices.Equal(src.asked, []string{fullName}) {
		t.Errorf("the cluster was asked for %q, want [%s]", src.asked, fullName)
	}

	missing := newTask("missing")
	missing.Spec.Container.Image = "nowhere:v1"
	err := r.Prepare(ctxT(t), missing)
	if !errors.Is(err, runtime.ErrImageNotFound) || !strings.Contains(err.Error(), "image docker.io/library/nowhere:v1 not found on any node or registry") {
		t.Errorf("Prepare of a missing image = %v, want ErrImageNotFound naming it", err)
	}
}

func TestPrepareWithoutSource(t *testing.T) {
	r := newRuntime(t, Config{})
	task := newTask("nosource")
	task.Spec.Container.Image = "nowhere:v1"
	if err := r.Prepare(ctxT(t), task); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Errorf("Prepare = %v, want ErrImageNotFound", err)
	}
}

// A reference pinned to a digest (NAME:TAG@DIGEST, as `stack deploy
// --resolve-image` writes it) runs the image stored under its tag when the
// digests agree, is fetched from the cluster when this node has another
// version, and is exported under its tag; another digest is not found.
func TestPinnedDigest(t *testing.T) {
	tarball := appImage(t, testImage)
	r1 := newRuntime(t, Config{})
	imgs, err := r1.Import(ctxT(t), bytes.NewReader(tarball))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	pinned := testImage + "@" + imgs[0].Digest
	task := newTask("pinned", "echo", "0", "pinned")
	task.Spec.Container.Image = pinned
	if st := wait(t, start(t, r1, task)); !st.Success() {
		t.Errorf("task of the pinned image: %+v", st)
	}
	var tar bytes.Buffer
	if err := r1.ExportImage(ctxT(t), pinned, &tar); err != nil {
		t.Fatalf("ExportImage of the pinned reference: %v", err)
	}
	other := testImage + "@sha256:" + strings.Repeat("0", 64)
	if err := r1.ExportImage(ctxT(t), other, io.Discard); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Errorf("ExportImage of another digest = %v, want ErrImageNotFound", err)
	}
	missing := newTask("other-digest")
	missing.Spec.Container.Image = other
	if err := r1.Prepare(ctxT(t), missing); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Errorf("Prepare of another digest = %v, want ErrImageNotFound", err)
	}

	repo, _, _ := strings.Cut(testImage, ":")
	src := &fakeSource{tars: map[string][]byte{"docker.io/library/" + repo + "@" + imgs[0].Digest: tar.Bytes()}}
	r2 := newRuntime(t, Config{Images: src.fetch})
	fetched := newTask("fetched-pinned", "echo", "0", "fetched")
	fetched.Spec.Container.Image = pinned
	if st := wait(t, start(t, r2, fetched)); !st.Success() {
		t.Errorf("task of the pinned image fetched from the cluster: %+v", st)
	}
	if names := imageNames(t, r2); !slices.Equal(names, []string{fullName}) {
		t.Errorf("after the fetch, images = %q; want the image under its tag", names)
	}
}
