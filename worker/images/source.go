package images

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// Source returns the runtime.ImageSource of a node: it asks a manager
// (dialManagers connects to one) to Export the image with search_cluster, so
// the manager serves it or relays it from whichever node has it. The
// connection is closed when the returned reader is closed, or at once on
// error. An image no node has gives an error wrapping runtime.ErrImageNotFound.
func Source(dialManagers func(ctx context.Context) (*grpc.ClientConn, error)) runtime.ImageSource {
	return func(ctx context.Context, name string) (io.ReadCloser, error) {
		conn, err := dialManagers(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetch image %s from the cluster: %w", name, err)
		}
		// The stream outlives this call: it ends when the reader is closed
		// or ctx ends, whichever comes first.
		ctx, cancel := context.WithCancel(ctx)
		fail := func(err error) (io.ReadCloser, error) {
			cancel()
			conn.Close()
			return nil, err
		}
		stream, err := shoalpb.NewImagesClient(conn).Export(ctx, &shoalpb.ExportImageRequest{Name: name, SearchCluster: true})
		if err != nil {
			return fail(fetchError(name, err))
		}
		// The first chunk tells whether any node has the image, so that
		// the caller learns it here and not on its first Read.
		first, err := stream.Recv()
		if err != nil && err != io.EOF {
			return fail(fetchError(name, err))
		}
		r := &chunkReader{recv: stream.Recv, close: func() { cancel(); conn.Close() }}
		if err == io.EOF {
			r.err = io.EOF
		} else {
			r.buf = first.GetData()
		}
		return r, nil
	}
}

// fetchError turns an Export error into the runtime's terms.
func fetchError(name string, err error) error {
	st, ok := status.FromError(err)
	if ok && st.Code() == codes.NotFound {
		return notFoundError(st.Message())
	}
	if ok {
		return fmt.Errorf("fetch image %s from the cluster: %s", name, st.Message())
	}
	return fmt.Errorf("fetch image %s from the cluster: %w", name, err)
}

// notFoundError is a manager's NotFound answer; it reads as the manager's
// message and is runtime.ErrImageNotFound to errors.Is.
type notFoundError string

func (e notFoundError) Error() string { return string(e) }
func (e notFoundError) Unwrap() error { return runtime.ErrImageNotFound }

// chunkReader reads the chunks of an Export stream as one byte stream.
type chunkReader struct {
	recv  func() (*shoalpb.ImageChunk, error)
	close func()
	buf   []byte
	err   error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		chunk, err := r.recv()
		switch {
		case err == io.EOF:
			r.err = io.EOF
		case err != nil:
			r.err = fmt.Errorf("image stream broke off: %s", statusText(err))
		default:
			r.buf = chunk.GetData()
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error {
	r.close()
	return nil
}
