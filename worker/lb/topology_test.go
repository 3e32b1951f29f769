package lb

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"shoal/internal/testutil"
)

// ioTimeout bounds a connection attempt or read that should succeed or be
// refused, so that a black-holed packet fails the test instead of hanging
// it; it is no assertion about speed.
const ioTimeout = 3 * time.Second

const (
	tcpPort = 8080
	udpPort = 9000
)

var nsSeq atomic.Int64

// topology is a simulated node: a "host" namespace holding a bridge
// (10.77.0.1/24) and the LB's table, and task namespaces on the bridge,
// each serving its own name over TCP and UDP.
type topology struct {
	host  string // path of the host namespace
	tasks map[string]task
}

type task struct {
	name string
	ns   string // namespace path
	addr netip.Addr
}

const gateway = "10.77.0.1"

// newTopology builds the host namespace and one task namespace per name,
// at 10.77.0.2, .3, … in order. Everything is removed by t.Cleanup.
func newTopology(tb testing.TB, names ...string) *topology {
	tb.Helper()
	testutil.RequireRoot(tb, "nft")
	topo := &topology{host: newNS(tb, "h"), tasks: make(map[string]task)}
	err := inNS(topo.host, func() error {
		for key, val := range map[string]string{
			"net/ipv4/ip_forward": "1",
			// Replies from a task to a client task on the same bridge must
			// pass conntrack to be un-DNATed, as on a shoal node.
			"net/bridge/bridge-nf-call-iptables": "1",
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644); err != nil {
				return fmt.Errorf("sysctl %s (modprobe br_netfilter?): %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := handleAt(tb, topo.host)
	// Replies the host sends itself (a reset for its own connection to a
	// closed VIP) go through lo.
	lo, err := h.LinkByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		tb.Fatal(err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		tb.Fatal(err)
	}
	mustAddr(tb, h, br, gateway+"/24")
	if err := h.LinkSetUp(br); err != nil {
		tb.Fatal(err)
	}
	// The host's own connections to a VIP need a route before the output
	// hook DNATs them; a real node's default route serves.
	_, vips, _ := net.ParseCIDR("10.201.0.0/16")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: vips}); err != nil {
		tb.Fatal(err)
	}
	for i, name := range names {
		topo.tasks[name] = topo.addTask(tb, h, br, name, fmt.Sprintf("10.77.0.%d", i+2))
	}
	return topo
}

func (topo *topology) addTask(tb testing.TB, h *netlink.Handle, br *netlink.Bridge, name, addr string) task {
	tb.Helper()
	path := newNS(tb, name)
	ns, err := netns.GetFromPath(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "v" + name, MasterIndex: br.Attrs().Index},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := h.LinkAdd(veth); err != nil {
		tb.Fatal(err)
	}
	host, err := h.LinkByName(veth.Name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetHairpin(host, true); err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetUp(host); err != nil {
		tb.Fatal(err)
	}
	th := handleAt(tb, path)
	for _, l := range []string{"lo", "eth0"} {
		link, err := th.LinkByName(l)
		if err != nil {
			tb.Fatal(err)
		}
		if l == "eth0" {
			mustAddr(tb, th, link, addr+"/24")
		}
		if err := th.LinkSetUp(link); err != nil {
			tb.Fatal(err)
		}
	}
	if err := th.RouteAdd(&netlink.Route{Gw: net.ParseIP(gateway)}); err != nil {
		tb.Fatal(err)
	}
	serve(tb, path, name)
	return task{name: name, ns: path, addr: netip.MustParseAddr(addr)}
}

// newLB makes an LB working in the topology's host namespace.
func (topo *topology) newLB(tb testing.TB) *LB {
	tb.Helper()
	l, err := New(Config{Table: "shoal-test", NetNS: topo.host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := l.Destroy(); err != nil {
			tb.Error(err)
		}
	})
	return l
}

func (topo *topology) addrs(names ...string) []netip.Addr {
	out := make([]netip.Addr, len(names))
	for i, n := range names {
		out[i] = topo.tasks[n].addr
	}
	return out
}

// newNS creates a named network namespace and returns its path; the
// calling goroutine's thread is back in its own namespace on return.
func newNS(tb testing.TB, role string) string {
	tb.Helper()
	name := fmt.Sprintf("shlb%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	goruntime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		goruntime.UnlockOSThread()
		tb.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(orig)
		goruntime.UnlockOSThread()
		tb.Fatalf("create namespace %s: %v", name, err)
	}
	ns.Close()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the test's goroutine.
		tb.Fatalf("back to the test's namespace: %v", err)
	}
	goruntime.UnlockOSThread()
	tb.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return filepath.Join("/run/netns", name)
}

func handleAt(tb testing.TB, path string) *netlink.Handle {
	tb.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

func mustAddr(tb testing.TB, h *netlink.Handle, link netlink.Link, cidr string) {
	tb.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.AddrAdd(link, a); err != nil {
		tb.Fatal(err)
	}
}

// inNS runs fn on a thread in the namespace at path ("" for the test's
// own). Sockets fn opens stay in that namespace.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	l := &LB{netns: path}
	return l.inNS(fn)
}

// serve answers name on every line a TCP client sends to tcpPort and on
// every datagram sent to udpPort, in the namespace at path.
func serve(tb testing.TB, path, name string) {
	tb.Helper()
	var tl net.Listener
	var ul net.PacketConn
	err := inNS(path, func() (err error) {
		if tl, err = net.Listen("tcp4", fmt.Sprintf(":%d", tcpPort)); err != nil {
			return err
		}
		ul, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", udpPort))
		return err
	})
	if err != nil {
		tb.Fatalf("listen in %s: %v", path, err)
	}
	tb.Cleanup(func() { tl.Close(); ul.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				lines := bufio.NewScanner(c)
				for lines.Scan() {
					from, _, _ := net.SplitHostPort(c.RemoteAddr().String())
					if _, err := fmt.Fprintf(c, "%s %s\n", name, from); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = ul.WriteTo([]byte(name), from)
		}
	}()
}

// conn is a TCP connection to a task server.
type conn struct {
	net.Conn
	r *bufio.Reader
}

// dial connects from the namespace at path ("" for the test's own).
func dial(path, addr string) (*conn, error) {
	var c net.Conn
	err := inNS(path, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, ioTimeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, r: bufio.NewReader(c)}, nil
}

// ask returns the name of the task answering and the client address it saw.
func (c *conn) ask() (name, from string, err error) {
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return "", "", err
	}
	if _, err := c.Write([]byte("?\n")); err != nil {
		return "", "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	name, from, _ = strings.Cut(strings.TrimSpace(line), " ")
	return name, from, nil
}

// askOnce makes one connection from path to addr and returns who answered.
func askOnce(path, addr string) (string, error) {
	c, err := dial(path, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	name, _, err := c.ask()
	return name, err
}

// dialUDP opens a connected UDP socket from the namespace at path.
func dialUDP(path, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(path, func() (err error) {
		c, err = net.Dial("udp4", addr)
		return err
	})
	return c, err
}

// askUDP sends one datagram on c and returns the answer.
func askUDP(c net.Conn) (string, error) {
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// isTimeout tells a black-holed connection from a refused one.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
