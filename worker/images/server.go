package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// ChunkSize is the size of the chunks images are streamed in.
const ChunkSize = 1 << 20

const (
	// listConcurrency bounds how many nodes a cluster-wide List asks at once.
	listConcurrency = 8
	// peerTimeout bounds a List of one node, and the wait for the first
	// chunk of one node's Export; a slow node must not stall the others.
	peerTimeout = 10 * time.Second
)

// ErrInvalidArchive is wrapped by Store.Import's error when the tar is not an
// image archive (docker-archive or OCI layout); Load reports it as the
// caller's mistake (InvalidArgument) rather than the node's.
var ErrInvalidArchive = errors.New("not an image archive")

// noImagesMessage is what Load and Export answer on a node without a Store.
const noImagesMessage = "this node runs the process runtime, which has no images; start it with --runtime containerd"

// Store is this node's image store; the containerd runtime implements it.
// Its methods must be safe for concurrent use.
type Store interface {
	// Import reads an image tar (docker-archive or OCI layout) to its end
	// and stores the images in it, returning them. A tar that is not an
	// image archive gives an error wrapping ErrInvalidArchive.
	Import(ctx context.Context, r io.Reader) ([]*shoalpb.Image, error)
	// ListImages lists the stored images; node_id need not be set.
	ListImages(ctx context.Context) ([]*shoalpb.Image, error)
	// ExportImage writes the named image as a tar that Import accepts. It
	// returns an error wrapping runtime.ErrImageNotFound, having written
	// nothing, when the store lacks the image.
	ExportImage(ctx context.Context, name string, w io.Writer) error
}

// Peer is another node of the cluster whose Images service a manager asks.
type Peer struct {
	NodeID string
	// Addr is the node's cluster address (host:port).
	Addr string
}

// Config is what a Server needs.
type Config struct {
	// NodeID is this node's ID, set on the images it lists.
	NodeID string
	// Store is this node's image store; nil when its runtime has none (the
	// process runtime): List is then empty and Load and Export refuse.
	Store Store
	// Peers returns the ready nodes of the cluster (this one may be among
	// them; it is skipped). Nil on workers, which never ask other nodes.
	Peers func() []Peer
	// Dial connects to another node's cluster port with this node's
	// certificate. The Server closes each connection it gets once done.
	Dial func(ctx context.Context, addr string) (*grpc.ClientConn, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server implements shoalpb.ImagesServer over a Store and, on managers, the
// other nodes' Images services.
type Server struct {
	shoalpb.UnimplementedImagesServer
	cfg Config
	log *slog.Logger
}

// NewServer returns a Server; register it on the local socket and, so that
// nodes can fetch images from each other, on the cluster port.
func NewServer(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log.With("component", "images")}
}

// Load imports the streamed tar into the Store. The chunks are piped into
// Import as they arrive, so a large image is never held in memory.
func (s *Server) Load(stream grpc.ClientStreamingServer[shoalpb.ImageChunk, shoalpb.LoadImageResponse]) error {
	if s.cfg.Store == nil {
		return status.Error(codes.FailedPrecondition, noImagesMessage)
	}
	ctx := stream.Context()
	pr, pw := io.Pipe()
	type result struct {
		images []*shoalpb.Image
		err    error
	}
	done := make(chan result, 1)
	go func() {
		imgs, err := s.cfg.Store.Import(ctx, pr)
		if err == nil {
			// A tar may end before the stream does (trailing padding);
			// drain it so the sender is not stuck on a full pipe.
			_, err = io.Copy(io.Discard, pr)
		}
		// Whatever Import left unread must fail the writer, not block it.
		pr.CloseWithError(errImportEnded)
		done <- result{imgs, err}
	}()
	var recvErr error
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			pw.Close()
			break
		}
		if err != nil {
			recvErr = err
			pw.CloseWithError(fmt.Errorf("receive image chunk: %w", err))
			break
		}
		if _, err := pw.Write(chunk.GetData()); err != nil {
			break // Import has ended; its result says why
		}
	}
	r := <-done
	switch {
	case recvErr != nil:
		return recvErr // the client went away; nobody reads the answer
	// The Store's errors say what went wrong with the image; they are
	// passed on as they are.
	case errors.Is(r.err, ErrInvalidArchive):
		return status.Errorf(codes.InvalidArgument, "%v; give an image tar made by 'docker save' or an OCI layout tar", r.err)
	case r.err != nil:
		s.log.Warn("image load failed", "err", r.err)
		return status.Error(codes.Internal, r.err.Error())
	}
	for _, img := range r.images {
		img.NodeId = s.cfg.NodeID
		s.log.Info("image loaded", "image", img.GetName(), "digest", img.GetDigest())
	}
	return stream.SendAndClose(&shoalpb.LoadImageResponse{Images: r.images})
}

var errImportEnded = errors.New("image import ended before the end of the tar")

// List lists this node's images and, with all_nodes on a manager, every other
// ready node's too. Nodes that cannot be asked are named in errors; they do
// not fail the call.
func (s *Server) List(ctx context.Context, req *shoalpb.ListImagesRequest) (*shoalpb.ListImagesResponse, error) {
	resp := &shoalpb.ListImagesResponse{}
	local, err := s.listLocal(ctx)
	if err != nil {
		if !req.GetAllNodes() {
			return nil, status.Errorf(codes.Internal, "list images: %v", err)
		}
		resp.Errors = append(resp.Errors, fmt.Sprintf("node %s: %v", s.cfg.NodeID, err))
	}
	resp.Images = local
	if req.GetAllNodes() {
		imgs, errs := s.listPeers(ctx)
		resp.Images = append(resp.Images, imgs...)
		resp.Errors = append(resp.Errors, errs...)
	}
	slices.SortFunc(resp.Images, func(a, b *shoalpb.Image) int {
		if c := strings.Compare(a.GetNodeId(), b.GetNodeId()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	slices.Sort(resp.Errors)
	return resp, nil
}

func (s *Server) listLocal(ctx context.Context) ([]*shoalpb.Image, error) {
	if s.cfg.Store == nil {
		return nil, nil
	}
	imgs, err := s.cfg.Store.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		img.NodeId = s.cfg.NodeID
	}
	return imgs, nil
}

// otherPeers are the peers other than this node, or none on a worker.
func (s *Server) otherPeers() []Peer {
	if s.cfg.Peers == nil || s.cfg.Dial == nil {
		return nil
	}
	var out []Peer
	for _, p := range s.cfg.Peers() {
		if p.NodeID != s.cfg.NodeID {
			out = append(out, p)
		}
	}
	return out
}

// listPeers asks every other node for its images, a few at a time.
func (s *Server) listPeers(ctx context.Context) ([]*shoalpb.Image, []string) {
	var (
		mu     sync.Mutex
		images []*shoalpb.Image
		errs   []string
		wg     sync.WaitGroup
	)
	slots := make(chan struct{}, listConcurrency)
	for _, p := range s.otherPeers() {
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				mu.Lock()
				errs = append(errs, fmt.Sprintf("node %s (%s): %v", p.NodeID, p.Addr, ctx.Err()))
				mu.Unlock()
				return
			}
			imgs, err := s.listPeer(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("node %s (%s): %s", p.NodeID, p.Addr, statusText(err)))
				return
			}
			images = append(images, imgs...)
		})
	}
	wg.Wait()
	return images, errs
}

func (s *Server) listPeer(ctx context.Context, p Peer) ([]*shoalpb.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	conn, err := s.cfg.Dial(ctx, p.Addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := shoalpb.NewImagesClient(conn).List(ctx, &shoalpb.ListImagesRequest{})
	if err != nil {
		return nil, err
	}
	for _, img := range resp.Images {
		img.NodeId = p.NodeID
	}
	return resp.Images, nil
}

// statusText is the message of a gRPC error, or the error's text.
func statusText(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// Export streams the named image from this node's Store or, with
// search_cluster, from the first other node that has it.
func (s *Server) Export(req *shoalpb.ExportImageRequest, stream grpc.ServerStreamingServer[shoalpb.ImageChunk]) error {
	name := req.GetName()
	if name == "" {
		return status.Error(codes.InvalidArgument, "export image: no image name given")
	}
	if s.cfg.Store == nil && !req.GetSearchCluster() {
		return status.Error(codes.FailedPrecondition, noImagesMessage)
	}
	ctx := stream.Context()
	if s.cfg.Store != nil {
		w := &chunkWriter{send: stream.Send, buf: make([]byte, 0, ChunkSize)}
		err := s.cfg.Store.ExportImage(ctx, name, w)
		if err == nil {
			err = w.flush()
		}
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, runtime.ErrImageNotFound) || w.sent:
			s.log.Warn("image export failed", "image", name, "err", err)
			return status.Errorf(codes.Internal, "export image %s from node %s: %v", name, s.cfg.NodeID, err)
		case !req.GetSearchCluster():
			return status.Errorf(codes.NotFound, "image %s not found on node %s", name, s.cfg.NodeID)
		}
	}
	return s.relay(ctx, name, stream)
}

// relay asks the other nodes in turn for the image and streams the first
// one's that has it.
func (s *Server) relay(ctx context.Context, name string, stream grpc.ServerStreamingServer[shoalpb.ImageChunk]) error {
	var unreachable []string
	for _, p := range s.otherPeers() {
		found, err := s.relayFrom(ctx, p, name, stream)
		if found {
			if err != nil {
				return status.Errorf(codes.Unavailable, "relay image %s from node %s: %s", name, p.NodeID, statusText(err))
			}
			s.log.Info("image relayed from another node", "image", name, "node", p.NodeID)
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			unreachable = append(unreachable, fmt.Sprintf("node %s (%s): %s", p.NodeID, p.Addr, statusText(err)))
		}
	}
	msg := fmt.Sprintf("image %s not found on any node", name)
	if len(unreachable) > 0 {
		msg += "; could not ask " + strings.Join(unreachable, "; ")
	}
	return status.Error(codes.NotFound, msg)
}

// relayFrom streams the image from one peer. found reports whether the peer
// has it (its first chunk arrived); err is then a failure mid-stream, which
// cannot be retried elsewhere since chunks were already sent. A peer without
// the image or without images at all is not found and no error.
func (s *Server) relayFrom(ctx context.Context, p Peer, name string, stream grpc.ServerStreamingServer[shoalpb.ImageChunk]) (found bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Only the start of the stream is bounded: a large image may take
	// longer than peerTimeout to copy, but a peer must answer within it.
	first := time.AfterFunc(peerTimeout, cancel)
	conn, err := s.cfg.Dial(ctx, p.Addr)
	if err != nil {
		first.Stop()
		return false, err
	}
	defer conn.Close()
	src, err := shoalpb.NewImagesClient(conn).Export(ctx, &shoalpb.ExportImageRequest{Name: name})
	if err != nil {
		first.Stop()
		return false, err
	}
	chunk, err := src.Recv()
	if !first.Stop() {
		return false, fmt.Errorf("no answer within %s", peerTimeout)
	}
	switch c := status.Code(err); {
	case err == io.EOF:
		return true, nil // an empty image; nothing to relay
	case c == codes.NotFound || c == codes.FailedPrecondition:
		return false, nil
	case err != nil:
		return false, err
	}
	for {
		if err := stream.Send(chunk); err != nil {
			return true, err
		}
		chunk, err = src.Recv()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return true, err
		}
	}
}

// chunkWriter sends what is written to it in chunks of ChunkSize.
type chunkWriter struct {
	send func(*shoalpb.ImageChunk) error
	buf  []byte
	sent bool
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), ChunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == ChunkSize {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// Send may keep the message until it is written: never reuse its bytes.
	data := w.buf
	w.buf = make([]byte, 0, ChunkSize)
	w.sent = true
	return w.send(&shoalpb.ImageChunk{Data: data})
}
