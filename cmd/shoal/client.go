package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

// globals are the flags every client command shares.
type globals struct {
	host    string
	certDir string
}

// client is a connection to a daemon.
type client struct {
	host string
	conn *grpc.ClientConn
}

func (g *globals) target() string {
	if g.host != "" {
		return g.host
	}
	if env := os.Getenv("SHOAL_HOST"); env != "" {
		return env
	}
	return "unix://" + filepath.Join(defaultDataDir, "shoal.sock")
}

// dial connects to the local socket or, for IP:PORT, to a manager with the
// client certificate from --tls-dir.
func (g *globals) dial() (*client, error) {
	host := g.target()
	if strings.HasPrefix(host, "unix://") {
		conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("-H %s: %w", host, err)
		}
		return &client{host: host, conn: conn}, nil
	}
	dir := g.certDir
	if dir == "" {
		dir = os.Getenv("SHOAL_CERT_PATH")
	}
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".shoal")
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("-H %s needs a client certificate: %w; create one with 'shoal cert client --out %s' on a manager", host, err, dir)
		}
		return b, nil
	}
	rootPEM, err := read("ca.pem")
	if err != nil {
		return nil, err
	}
	certPEM, err := read("cert.pem")
	if err != nil {
		return nil, err
	}
	keyPEM, err := read("key.pem")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := ca.ClientCertTLS(certPEM, keyPEM, rootPEM, ca.RoleManager)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir %s: %w", dir, err)
	}
	conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("-H %s: %w", host, err)
	}
	return &client{host: host, conn: conn}, nil
}

func (c *client) Close() error { return c.conn.Close() }

func (c *client) control() shoalpb.ControlServiceClient {
	return shoalpb.NewControlServiceClient(c.conn)
}

func (c *client) local() shoalpb.NodeServiceClient { return shoalpb.NewNodeServiceClient(c.conn) }

// explain turns a gRPC error into what the user should read.
func (c *client) explain(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		if strings.HasPrefix(c.host, "unix://") && (strings.Contains(st.Message(), "connect:") || strings.Contains(st.Message(), "no such file")) {
			return fmt.Errorf("cannot reach a shoal daemon at %s: is it running? Start one with 'shoal init', or point -H/SHOAL_HOST at a running daemon", c.host)
		}
	case codes.Unimplemented:
		if strings.Contains(st.Message(), "ControlService") {
			return fmt.Errorf("this node is a worker: worker nodes cannot view or change cluster state; run the command on a manager, or use -H with a manager's address")
		}
		if strings.Contains(st.Message(), "NodeService") {
			return fmt.Errorf("%s is a manager's cluster port; this command acts on one node and needs that node's local socket (-H unix:///DATA-DIR/shoal.sock)", c.host)
		}
	}
	return fmt.Errorf("%s", st.Message())
}

// ctx is the deadline of one CLI call.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// call dials, runs fn within the deadline of one CLI call and closes the
// connection. fn's error comes back as it is: fn explains what it must, for
// commands that explain their calls differently (see explainLocal).
func (g *globals) call(fn func(ctx context.Context, c *client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := callCtx()
	defer cancel()
	return fn(ctx, c)
}

// withClient dials, runs fn and explains its error.
func (g *globals) withClient(fn func(ctx context.Context, c *client) error) error {
	return g.call(func(ctx context.Context, c *client) error {
		return c.explain(fn(ctx, c))
	})
}

// explainLocal is explain for a service each node serves on its own local
// socket (images, volumes): an older daemon lacks it, and a manager's cluster
// port refuses it. service names it ("images"); scope says why it belongs to
// one node ("volumes belong to one node").
func (c *client) explainLocal(err error, service, scope string) error {
	switch status.Code(err) {
	case codes.Unimplemented:
		return fmt.Errorf("the daemon at %s does not serve %s; upgrade it to this shoal version", c.host, service)
	case codes.PermissionDenied:
		if !strings.HasPrefix(c.host, "unix://") {
			return fmt.Errorf("%s: run the command on that node (its local socket), not through %s", scope, c.host)
		}
	}
	return c.explain(err)
}
