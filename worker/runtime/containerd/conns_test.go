package containerd

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"

	"shoal/internal/testutil"
	"shoal/worker/runtime"
)

// A container in the host's network counts the connections its processes
// hold: one a client keeps open, none once the client has closed it.
func TestInboundConnsInTheHostsNetwork(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	port := freePort(t)
	h := start(t, r, newTask("conns-host", "serve", strconv.Itoa(port)))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	countsOf(t, h, func() (net.Conn, error) { return net.Dial("tcp", addr) })
}

// A container in a network namespace of its own counts every connection to
// a listener in it.
func TestInboundConnsInItsOwnNamespace(t *testing.T) {
	testutil.RequireRoot(t, "ip")
	nw := &fakeNetwork{dir: t.TempDir(), attached: map[string]string{}}
	t.Cleanup(func() {
		for id := range nw.attached {
			_ = nw.Detach(context.Background(), id)
		}
	})
	r := newRuntime(t, Config{Network: nw})
	loadApp(t, r)
	h := start(t, r, newTask("conns-netns", "serve", "8080"))
	const ns = "shoal-ctrd-test-conns-netns" // fakeNetwork's name for it
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	countsOf(t, h, func() (net.Conn, error) { return testutil.DialIn(ctxT(t), ns, "tcp", "127.0.0.1:8080") })
}

// countsOf checks h's count against one connection dial opens, once the
// task listens, and after it is closed.
func countsOf(t *testing.T, h runtime.Handle, dial func() (net.Conn, error)) {
	t.Helper()
	counter, ok := h.(runtime.ConnCounter)
	if !ok {
		t.Fatal("the handle does not count connections")
	}
	var conn net.Conn
	testutil.Eventually(t, testTimeout, func() (err error) {
		conn, err = dial()
		return err
	})
	defer conn.Close()
	await := func(want int) {
		t.Helper()
		testutil.Eventually(t, testTimeout, func() error {
			n, err := counter.InboundConns(ctxT(t))
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%d inbound connections, want %d", n, want)
			}
			return nil
		})
	}
	await(1)
	conn.Close()
	await(0)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
