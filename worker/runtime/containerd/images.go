package containerd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// normalize spells an image name as Docker does: "web:v1" is
// "docker.io/library/web:v1", and no tag means ":latest".
func normalize(name string) (string, error) {
	ref, err := reference.ParseDockerRef(name)
	if err != nil {
		return "", fmt.Errorf("%w: image name %q: %v", runtime.ErrInvalidSpec, name, err)
	}
	return ref.String(), nil
}

// imageNotFound is Prepare's error for an image no source has.
type imageNotFound struct{ msg string }

func (e *imageNotFound) Error() string { return e.msg }
func (e *imageNotFound) Unwrap() error { return runtime.ErrImageNotFound }

// ensureImage returns the task's image, unpacked, getting it from the
// registry or another node if this one lacks it.
func (r *Runtime) ensureImage(ctx context.Context, name string) (client.Image, error) {
	ref, err := normalize(name)
	if err != nil {
		return nil, err
	}
	img, err := r.localImage(ctx, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	if stored, err := r.storedName(ctx, ref); err == nil {
		return r.localImage(ctx, stored)
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PullTimeout)
	img, pullErr := r.c.Pull(pctx, ref,
		client.WithPullUnpack,
		client.WithPullSnapshotter(snapshotter),
		client.WithResolver(docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
			docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(dockerCredentials))),
		)})),
	)
	cancel()
	if pullErr == nil {
		r.log.Info("image pulled", "image", ref)
		return img, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	fetchErr := errors.New("no cluster image source")
	if r.cfg.Images != nil {
		var rc io.ReadCloser
		if rc, fetchErr = r.cfg.Images(ctx, ref); fetchErr == nil {
			_, fetchErr = r.Import(ctx, rc)
			rc.Close()
			if fetchErr == nil {
				if stored, err := r.storedName(ctx, ref); err == nil {
					r.log.Info("image fetched from another node", "image", ref)
					return r.localImage(ctx, stored)
				}
				fetchErr = fmt.Errorf("the tar another node sent does not hold %s", ref)
			}
		}
	}
	return nil, &imageNotFound{msg: fmt.Sprintf("image %s not found on any node or registry (registry: %v; cluster: %v); load it with `shoal image load` or push it to its registry", ref, pullErr, fetchErr)}
}

// storedName is the name under which this node stores the image ref names:
// ref itself, or for a reference pinned to a digest ("web:v1@sha256:…", as
// `stack deploy --resolve-image` writes them) the name of a stored image
// with that digest, since an image loaded or fetched from another node is
// stored under its tag. NotFound when there is none.
func (r *Runtime) storedName(ctx context.Context, ref string) (string, error) {
	ctx = nsCtx(ctx)
	is := r.c.ImageService()
	if _, err := is.Get(ctx, ref); err == nil || !errdefs.IsNotFound(err) {
		return ref, err
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	pinned, ok := named.(reference.Canonical)
	if !ok {
		return "", fmt.Errorf("%w: image %s", errdefs.ErrNotFound, ref)
	}
	imgs, err := is.List(ctx, "target.digest=="+pinned.Digest().String())
	if err != nil {
		return "", err
	}
	for _, im := range imgs {
		if n, err := reference.ParseNormalizedNamed(im.Name); err == nil && n.Name() == pinned.Name() {
			return im.Name, nil
		}
	}
	return "", fmt.Errorf("%w: no image of %s has digest %s on this node", errdefs.ErrNotFound, pinned.Name(), pinned.Digest())
}

// localImage returns the named image if this node has it, unpacking it if
// needed.
func (r *Runtime) localImage(ctx context.Context, ref string) (client.Image, error) {
	img, err := r.c.GetImage(ctx, ref)
	if err != nil {
		return nil, err
	}
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpack image %s: %w", ref, err)
		}
	}
	return img, nil
}

// dockerCredentials reads a registry's credentials from the Docker config
// file ($DOCKER_CONFIG/config.json or ~/.docker/config.json), if any.
func dockerCredentials(host string) (string, string, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", nil
		}
		dir = filepath.Join(home, ".docker")
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", "", nil
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", "", fmt.Errorf("docker config %s: %w", filepath.Join(dir, "config.json"), err)
	}
	keys := []string{host, "https://" + host, "https://" + host + "/v1/"}
	if host == "registry-1.docker.io" || host == "docker.io" {
		keys = append(keys, "https://index.docker.io/v1/", "index.docker.io", "docker.io")
	}
	for _, k := range keys {
		a, ok := cfg.Auths[k]
		if !ok || a.Auth == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("docker config: auth for %s is not base64: %w", k, err)
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		return user, pass, nil
	}
	return "", "", nil
}

// Import reads an image tar (docker-archive or OCI layout) into this node's
// store and unpacks it. On any error nothing of the tar is kept.
func (r *Runtime) Import(ctx context.Context, rd io.Reader) ([]*shoalpb.Image, error) {
	ctx = nsCtx(ctx)
	ls := r.c.LeasesService()
	lease, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return nil, err
	}
	lctx := leases.WithLease(ctx, lease.ID)
	// Everything imported is referenced by the lease until the images
	// hold it; deleting the lease then lets the collector take the rest.
	defer func() {
		if err := ls.Delete(context.WithoutCancel(ctx), lease, leases.SynchronousDelete); err != nil {
			r.log.Warn("delete import lease", "err", err)
		}
	}()
	imgs, err := r.c.Import(lctx, rd, client.WithImportPlatform(platforms.DefaultStrict()))
	if err != nil {
		return nil, fmt.Errorf("import image: the tar is not a valid docker-archive or OCI image: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("import image: the tar names no image (docker-archive RepoTags or an OCI index with io.containerd.image.name annotations)")
	}
	out := make([]*shoalpb.Image, 0, len(imgs))
	for _, im := range imgs {
		img := client.NewImageWithPlatform(r.c, im, platforms.DefaultStrict())
		if err := img.Unpack(lctx, snapshotter); err != nil {
			r.deleteImages(ctx, imgs)
			return nil, fmt.Errorf("import image %s: unpack: %w", im.Name, err)
		}
		pi, err := r.describe(ctx, im)
		if err != nil {
			r.deleteImages(ctx, imgs)
			return nil, err
		}
		out = append(out, pi)
	}
	return out, nil
}

func (r *Runtime) deleteImages(ctx context.Context, imgs []images.Image) {
	for _, im := range imgs {
		if err := r.c.ImageService().Delete(context.WithoutCancel(ctx), im.Name); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("delete half-imported image", "image", im.Name, "err", err)
		}
	}
}

func (r *Runtime) describe(ctx context.Context, im images.Image) (*shoalpb.Image, error) {
	size, err := im.Size(ctx, r.c.ContentStore(), platforms.DefaultStrict())
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", im.Name, err)
	}
	return &shoalpb.Image{
		Name:      im.Name,
		Digest:    im.Target.Digest.String(),
		Size:      size,
		CreatedAt: timestamppb.New(im.CreatedAt),
	}, nil
}

// ListImages lists this node's images.
func (r *Runtime) ListImages(ctx context.Context) ([]*shoalpb.Image, error) {
	ctx = nsCtx(ctx)
	imgs, err := r.c.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*shoalpb.Image, 0, len(imgs))
	for _, im := range imgs {
		pi, err := r.describe(ctx, im)
		if err != nil {
			// Content of another platform or half-pulled: listed without a size.
			pi = &shoalpb.Image{Name: im.Name, Digest: im.Target.Digest.String(), CreatedAt: timestamppb.New(im.CreatedAt)}
		}
		out = append(out, pi)
	}
	return out, nil
}

// ExportImage writes the named image as an OCI tar (with a docker-archive
// manifest beside it) that Import on another node reads.
func (r *Runtime) ExportImage(ctx context.Context, name string, w io.Writer) error {
	ctx = nsCtx(ctx)
	ref, err := normalize(name)
	if err != nil {
		return err
	}
	stored, err := r.storedName(ctx, ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: image %s is not on this node", runtime.ErrImageNotFound, ref)
		}
		return err
	}
	if err := r.c.Export(ctx, w, archive.WithImage(r.c.ImageService(), stored), archive.WithPlatform(platforms.DefaultStrict())); err != nil {
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	return nil
}
