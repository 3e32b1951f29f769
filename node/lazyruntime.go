package node

import (
	"context"
	"io"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
	"shoal/worker/runtime/containerd"
)

// startingRuntime is the containerd runtime while its containerd starts,
// which takes seconds: the daemon serves and its agent holds its session
// meanwhile, so that a restarted node is not taken for dead and its tasks
// replaced (the leader orphans them 2 s after a node goes down). Every call
// waits until containerd answers; a containerd that cannot start ends the
// daemon (see openRuntime).
type startingRuntime struct {
	dataDir string
	ready   chan struct{} // closed once rt or err is set
	rt      *containerd.Runtime
	err     error
}

var _ runtime.Runtime = (*startingRuntime)(nil)

// get waits for the runtime.
func (s *startingRuntime) get(ctx context.Context) (*containerd.Runtime, error) {
	select {
	case <-s.ready:
		return s.rt, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *startingRuntime) Name() string { return "containerd" }

func (s *startingRuntime) Prepare(ctx context.Context, t *shoalpb.Task) error {
	rt, err := s.get(ctx)
	if err != nil {
		return err
	}
	return rt.Prepare(ctx, t)
}

func (s *startingRuntime) Start(ctx context.Context, t *shoalpb.Task) (runtime.Handle, error) {
	rt, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return rt.Start(ctx, t)
}

func (s *startingRuntime) Adopt(ctx context.Context, taskID string, state []byte) (runtime.Handle, error) {
	rt, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return rt.Adopt(ctx, taskID, state)
}

func (s *startingRuntime) Remove(ctx context.Context, taskID string) error {
	rt, err := s.get(ctx)
	if err != nil {
		return err
	}
	return rt.Remove(ctx, taskID)
}

// LogPath depends on the data dir only; it needs no containerd.
func (s *startingRuntime) LogPath(taskID string) string {
	return containerd.LogPath(s.dataDir, taskID)
}

func (s *startingRuntime) Import(ctx context.Context, r io.Reader) ([]*shoalpb.Image, error) {
	rt, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return rt.Import(ctx, r)
}

func (s *startingRuntime) ListImages(ctx context.Context) ([]*shoalpb.Image, error) {
	rt, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return rt.ListImages(ctx)
}

func (s *startingRuntime) ExportImage(ctx context.Context, name string, w io.Writer) error {
	rt, err := s.get(ctx)
	if err != nil {
		return err
	}
	return rt.ExportImage(ctx, name, w)
}
