package containerd

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// imageInfo is what every start of an image needs from its content: the
// parsed config and the chain ID of its unpacked layers (the parent of each
// container's snapshot).
type imageInfo struct {
	config  *imageConfig
	chainID string
}

// imageCache keeps imageInfo per image manifest digest. Content is
// addressed by digest, so an entry never goes stale; without it each start
// read the manifest and config blobs from containerd three times (our
// config, the snapshot's parent, the spec), about 100 ms of a loaded node's
// start when 50 start at once.
type imageCache struct {
	mu sync.Mutex
	m  map[digest.Digest]*imageInfo
}

// info returns img's config and chain ID, reading them on first use.
func (c *imageCache) info(ctx context.Context, img client.Image) (*imageInfo, error) {
	key := img.Target().Digest
	c.mu.Lock()
	ii := c.m[key]
	c.mu.Unlock()
	if ii != nil {
		return ii, nil
	}
	ic, err := readImageConfig(ctx, img)
	if err != nil {
		return nil, err
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: read its layers: %w", img.Name(), err)
	}
	ii = &imageInfo{config: ic, chainID: identity.ChainID(diffIDs).String()}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[digest.Digest]*imageInfo{}
	}
	c.m[key] = ii
	c.mu.Unlock()
	return ii, nil
}

// withSnapshot prepares the container's writable snapshot on top of the
// image's unpacked layers, as client.WithNewSnapshot does but from the
// cached chain ID instead of re-reading the image.
func withSnapshot(key string, ii *imageInfo) client.NewContainerOpts {
	return func(ctx context.Context, c *client.Client, ctr *containers.Container) error {
		if _, err := c.SnapshotService(snapshotter).Prepare(ctx, key, ii.chainID); err != nil {
			return err
		}
		ctr.Snapshotter = snapshotter
		ctr.SnapshotKey = key
		return nil
	}
}
