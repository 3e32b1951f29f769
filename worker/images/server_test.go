package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// fakeStore keeps images as byte strings. An imported "tar" is the image's
// name, a newline, and its content; one starting with "BAD" is no archive.
type fakeStore struct {
	mu     sync.Mutex
	images map[string][]byte
	read   chan int // if set, Import reports each byte count it has read
}

func newFakeStore(images map[string][]byte) *fakeStore {
	if images == nil {
		images = map[string][]byte{}
	}
	return &fakeStore{images: images}
}

func (f *fakeStore) Import(_ context.Context, r io.Reader) ([]*shoalpb.Image, error) {
	var all []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		all = append(all, buf[:n]...)
		if n > 0 && f.read != nil {
			f.read <- len(all)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if bytes.HasPrefix(all, []byte("BAD")) {
		return nil, fmt.Errorf("no manifest.json or index.json: %w", ErrInvalidArchive)
	}
	name, content, _ := bytes.Cut(all, []byte("\n"))
	f.mu.Lock()
	f.images[string(name)] = content
	f.mu.Unlock()
	return []*shoalpb.Image{{Name: string(name), Digest: "sha256:abc", Size: int64(len(content))}}, nil
}

func (f *fakeStore) ListImages(context.Context) ([]*shoalpb.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*shoalpb.Image
	for name, b := range f.images {
		out = append(out, &shoalpb.Image{Name: name, Size: int64(len(b)), CreatedAt: timestamppb.Now()})
	}
	return out, nil
}

func (f *fakeStore) ExportImage(_ context.Context, name string, w io.Writer) error {
	f.mu.Lock()
	b, ok := f.images[name]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("image %s: %w", name, runtime.ErrImageNotFound)
	}
	// Write in odd pieces so chunking is exercised.
	for len(b) > 0 {
		k := min(len(b), 300_000)
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// serve runs srv on a loopback port until the test ends.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	shoalpb.RegisterImagesServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func dial(_ context.Context, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func client(t *testing.T, addr string) shoalpb.ImagesClient {
	t.Helper()
	conn, err := dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return shoalpb.NewImagesClient(conn)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v, want %s mentioning %q", err, code, msg)
	}
}

// Load hands the chunks to Import as they arrive: the second chunk is only
// sent once Import has read the first, which would never happen if the
// server waited for the whole tar.
func TestLoadStreams(t *testing.T) {
	store := newFakeStore(nil)
	store.read = make(chan int, 100)
	c := client(t, serve(t, NewServer(Config{NodeID: "n1", Store: store})))
	ctx := testCtx(t)
	stream, err := c.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := []byte("docker.io/library/web:v1\n")
	if err := stream.Send(&shoalpb.ImageChunk{Data: first}); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < len(first); {
		select {
		case got = <-store.read:
		case <-ctx.Done():
			t.Fatal("Import did not see the first chunk before the stream ended")
		}
	}
	go func() {
		for range store.read {
		}
	}()
	rest := bytes.Repeat([]byte("x"), 3*ChunkSize)
	if err := stream.Send(&shoalpb.ImageChunk{Data: rest}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Images) != 1 || resp.Images[0].Name != "docker.io/library/web:v1" || resp.Images[0].NodeId != "n1" {
		t.Fatalf("Load answered %v", resp.Images)
	}
	if got := len(store.images["docker.io/library/web:v1"]); got != len(rest) {
		t.Fatalf("stored %d bytes, want %d", got, len(rest))
	}
}

func TestLoadRefusals(t *testing.T) {
	load := func(t *testing.T, srv *Server, data string) error {
		stream, err := client(t, serve(t, srv)).Load(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&shoalpb.ImageChunk{Data: []byte(data)}); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	t.Run("no store", func(t *testing.T) {
		err := load(t, NewServer(Config{NodeID: "n1"}), "img\nx")
		wantStatus(t, err, codes.FailedPrecondition, "this node runs the process runtime, which has no images; start it with --runtime containerd")
	})
	t.Run("not an archive", func(t *testing.T) {
		err := load(t, NewServer(Config{NodeID: "n1", Store: newFakeStore(nil)}), "BAD tar")
		wantStatus(t, err, codes.InvalidArgument, "no manifest.json")
	})
}

// A cluster-wide List has every reachable node's images, each naming its
// node, and names the node that could not be asked.
func TestListAllNodes(t *testing.T) {
	peer := serve(t, NewServer(Config{NodeID: "w1", Store: newFakeStore(map[string][]byte{"b:v1": []byte("b")})}))
	noImages := serve(t, NewServer(Config{NodeID: "w2"}))
	dead := deadAddr(t)
	mgr := NewServer(Config{
		NodeID: "m1",
		Store:  newFakeStore(map[string][]byte{"a:v1": []byte("a")}),
		Peers: func() []Peer {
			return []Peer{{"m1", "127.0.0.1:1"}, {"w1", peer}, {"w2", noImages}, {"w3", dead}}
		},
		Dial: dial,
	})
	c := client(t, serve(t, mgr))
	resp, err := c.List(testCtx(t), &shoalpb.ListImagesRequest{AllNodes: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, img := range resp.Images {
		got = append(got, img.NodeId+" "+img.Name)
	}
	if want := []string{"m1 a:v1", "w1 b:v1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("images %q, want %q", got, want)
	}
	if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0], "node w3 ("+dead+")") {
		t.Fatalf("errors %q, want one naming w3 at %s", resp.Errors, dead)
	}

	local, err := c.List(testCtx(t), &shoalpb.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(local.Images) != 1 || local.Images[0].NodeId != "m1" || len(local.Errors) != 0 {
		t.Fatalf("a local List answered %v", local)
	}
}

// Export with search_cluster relays the image from the node that has it,
// passing over nodes that cannot be reached or have no images.
func TestExportRelay(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), ChunkSize/4) // 2.5 chunks
	holder := serve(t, NewServer(Config{NodeID: "w2", Store: newFakeStore(map[string][]byte{"web:v1": content})}))
	peers := []Peer{{"w0", deadAddr(t)}, {"w1", serve(t, NewServer(Config{NodeID: "w1"}))}, {"w2", holder}}
	mgr := client(t, serve(t, NewServer(Config{NodeID: "m1", Store: newFakeStore(nil), Peers: func() []Peer { return peers }, Dial: dial})))

	stream, err := mgr.Export(testCtx(t), &shoalpb.ExportImageRequest{Name: "web:v1", SearchCluster: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk.Data) > ChunkSize {
			t.Fatalf("a chunk of %d bytes, more than %d", len(chunk.Data), ChunkSize)
		}
		got = append(got, chunk.Data...)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("relayed %d bytes, not the %d the holder has", len(got), len(content))
	}
}

func TestExportNotFound(t *testing.T) {
	peers := []Peer{{"w1", serve(t, NewServer(Config{NodeID: "w1", Store: newFakeStore(nil)}))}}
	mgr := client(t, serve(t, NewServer(Config{NodeID: "m1", Store: newFakeStore(nil), Peers: func() []Peer { return peers }, Dial: dial})))
	recv := func(req *shoalpb.ExportImageRequest) error {
		stream, err := mgr.Export(testCtx(t), req)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	wantStatus(t, recv(&shoalpb.ExportImageRequest{Name: "nosuch:v1", SearchCluster: true}), codes.NotFound, "image nosuch:v1 not found on any node")
	wantStatus(t, recv(&shoalpb.ExportImageRequest{Name: "nosuch:v1"}), codes.NotFound, "image nosuch:v1 not found on node m1")
	noImages := client(t, serve(t, NewServer(Config{NodeID: "w2"})))
	stream, err := noImages.Export(testCtx(t), &shoalpb.ExportImageRequest{Name: "x"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantStatus(t, err, codes.FailedPrecondition, "--runtime containerd")
}

// Source fetches an image through a manager, which relays it from a worker.
func TestSource(t *testing.T) {
	content := bytes.Repeat([]byte("abc"), ChunkSize)
	holder := serve(t, NewServer(Config{NodeID: "w1", Store: newFakeStore(map[string][]byte{"web:v1": content})}))
	mgr := serve(t, NewServer(Config{NodeID: "m1", Peers: func() []Peer { return []Peer{{"w1", holder}} }, Dial: dial}))
	src := Source(func(ctx context.Context) (*grpc.ClientConn, error) { return dial(ctx, mgr) })

	r, err := src(testCtx(t), "web:v1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, want %d", len(got), len(content))
	}

	_, err = src(testCtx(t), "nosuch:v1")
	if !errors.Is(err, runtime.ErrImageNotFound) || !strings.Contains(err.Error(), "image nosuch:v1 not found on any node") {
		t.Fatalf("got %v, want runtime.ErrImageNotFound naming the image", err)
	}

	_, err = Source(func(ctx context.Context) (*grpc.ClientConn, error) { return dial(ctx, deadAddr(t)) })(testCtx(t), "web:v1")
	if err == nil || errors.Is(err, runtime.ErrImageNotFound) || !strings.Contains(err.Error(), "fetch image web:v1 from the cluster") {
		t.Fatalf("with no manager reachable got %v", err)
	}
}
