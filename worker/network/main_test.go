package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	goruntime "runtime"
	"shoal/internal/testutil"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inTestNS is set in the copy of the test binary TestMain runs in a network
// namespace of its own.
const inTestNS = "SHOAL_NETWORK_TEST_NETNS"

// helperEnv is set in a copy of the test binary that plays one node of
// TestCrossNode.
const helperEnv = "SHOAL_NETWORK_TEST_HOST"

// TestMain runs the tests, as root, in a fresh network namespace standing in
// for a node's host: they may then set FORWARD's policy, make bridges and
// add rules without touching the machine's own network. /run/netns is still
// the machine's, shared with any shoal node on it, which the tests rely on
// to check that a Network touches only the namespaces it made.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 || os.Getenv(inTestNS) != "" || os.Getenv(helperEnv) != "" {
		if os.Getenv(inTestNS) != "" {
			if err := linkUp("lo"); err != nil {
				fmt.Fprintln(os.Stderr, "network test: lo up:", err)
				os.Exit(1)
			}
		}
		os.Exit(m.Run())
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inTestNS+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "network test: run in a new network namespace:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

var bridgeSeq atomic.Int32

// newTestNetwork returns a Network on a bridge of its own with subnet
// (e.g. "10.231.3.0/24") of the test pool 10.231.0.0/16 set; everything
// it made is removed when the test ends.
func newTestNetwork(tb testing.TB, subnet string) *Network {
	tb.Helper()
	n := newTestNetworkAt(tb, tb.TempDir(), fmt.Sprintf("shtest%d", bridgeSeq.Add(1)))
	if err := n.SetNetworks(defaultNet(subnet)); err != nil {
		tb.Fatal(err)
	}
	return n
}

const testPool = "10.231.0.0/16"

// defaultNet lists the default network (the test pool) with the node's
// slice, then more.
func defaultNet(slice string, more ...Def) []Def {
	return append([]Def{{ID: DefaultID, Subnet: netip.MustParsePrefix(testPool), Slice: netip.MustParsePrefix(slice)}}, more...)
}

func newTestNetworkAt(tb testing.TB, dir, bridge string) *Network {
	tb.Helper()
	testutil.RequireRoot(tb)
	n, err := New(Config{DataDir: dir, Bridge: bridge, DNS: []string{"192.0.2.53"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Destroy(tb.Context()); err != nil {
			tb.Error(err)
		}
	})
	return n
}

// inNS runs fn on a thread switched into the namespace at path, and
// switches back. Sockets fn opens stay in that namespace.
func inNS(tb testing.TB, path string, fn func() error) error {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("switch back: %w", err) // thread stays locked and dies
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listenIn opens a TCP listener on addr inside the namespace at path that
// answers every connection with the address it came from, and closes it
// when the test ends.
func listenIn(tb testing.TB, path, addr string) net.Listener {
	tb.Helper()
	var l net.Listener
	if err := inNS(tb, path, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tb.Fatalf("listen on %s in %s: %v", addr, path, err)
	}
	tb.Cleanup(func() { l.Close() })
	go serveRemoteAddr(l)
	return l
}

func serveRemoteAddr(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		_, _ = c.Write([]byte(host + "\n"))
		c.Close()
	}
}

// dialFrom connects from the namespace at path ("" for the test's own) to
// addr and returns the source address the listener saw.
func dialFrom(tb testing.TB, path, addr string) (string, error) {
	tb.Helper()
	return dialFromTimeout(tb, path, addr, dialTimeout)
}

// dialFromTimeout is dialFrom giving up connecting after timeout.
func dialFromTimeout(tb testing.TB, path, addr string, timeout time.Duration) (string, error) {
	tb.Helper()
	var seen string
	dial := func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 64)
		k, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		seen = strings.TrimSpace(string(buf[:k]))
		return nil
	}
	var err error
	if path == "" {
		err = dial()
	} else {
		err = inNS(tb, path, dial)
	}
	return seen, err
}
