package network

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// hostConfig is what one helper node of TestCrossNode runs.
type hostConfig struct {
	DataDir, Bridge string
	Networks        []hostNet
	Peers           []hostPeer
	Tasks           []hostTask
}

type hostNet struct{ ID, Subnet, Slice string }

type hostPeer struct{ Subnet, IP string }

// hostTask is a task of a helper node: its networks and addresses, the
// primary first.
type hostTask struct {
	ID   string
	Nets [][2]string // network ID, address
}

// helperReady is the line a helper prints once its tasks listen; a JSON
// object of each task's namespace path by task ID follows it.
const helperReady = "CROSSNODE-READY "

// TestCrossNode runs two nodes, each in a network namespace standing in
// for a host, joined by a veth pair as their LAN. Each runs its own Network
// (a copy of this test binary under nsenter) with its subnet of the pool,
// the other as its peer, and one task. A task then reaches the other
// node's task by IP, and is seen with its own address: traffic inside the
// pool is routed, not masqueraded.
func TestCrossNode(t *testing.T) {
	hostA, hostB := makeHosts(t)
	taskA := startHost(t, hostA, hostConfig{
		DataDir: t.TempDir(), Bridge: "shoal0",
		Networks: []hostNet{{DefaultID, testPool, "10.231.20.0/24"}},
		Peers:    []hostPeer{{"10.231.21.0/24", "198.51.100.2"}},
		Tasks:    []hostTask{{"crossa", [][2]string{{DefaultID, "10.231.20.2/24"}}}},
	})["crossa"]
	taskB := startHost(t, hostB, hostConfig{
		DataDir: t.TempDir(), Bridge: "shoal0",
		Networks: []hostNet{{DefaultID, testPool, "10.231.21.0/24"}},
		Peers:    []hostPeer{{"10.231.20.0/24", "198.51.100.1"}},
		Tasks:    []hostTask{{"crossb", [][2]string{{DefaultID, "10.231.21.2/24"}}}},
	})["crossb"]
	if seen, err := dialFrom(t, taskA, "10.231.21.2:7000"); err != nil || seen != "10.231.20.2" {
		t.Errorf("task on node A → task on node B: seen from %q, %v; want 10.231.20.2", seen, err)
	}
	if seen, err := dialFrom(t, taskB, "10.231.20.2:7000"); err != nil || seen != "10.231.21.2" {
		t.Errorf("task on node B → task on node A: seen from %q, %v; want 10.231.21.2", seen, err)
	}
}

// makeHosts makes two namespaces standing in for hosts, joined by a veth
// pair as their LAN (198.51.100.1 and .2).
func makeHosts(t *testing.T) (hostA, hostB string) {
	t.Helper()
	testutil.RequireRoot(t, "nsenter")
	hostA, hostB = makeHost(t, "a"), makeHost(t, "b")
	lanA, lanB := fmt.Sprintf("shxa%d", os.Getpid()), fmt.Sprintf("shxb%d", os.Getpid())
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: lanA}, PeerName: lanB}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteLink(lanA) })
	for _, end := range []struct{ link, ns, addr string }{{lanA, hostA, "198.51.100.1/24"}, {lanB, hostB, "198.51.100.2/24"}} {
		l, err := netlink.LinkByName(end.link)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := openNS(t, end.ns)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(netns.NsHandle(ns))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		for _, name := range []string{end.link, "lo"} {
			l, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name != "lo" {
				a, _ := netlink.ParseAddr(end.addr)
				if err := h.AddrAdd(l, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
	}

	return hostA, hostB
}

func openNS(tb testing.TB, name string) (netlink.NsFd, error) {
	f, err := os.Open(netnsDir + "/" + name)
	if err != nil {
		return 0, err
	}
	tb.Cleanup(func() { f.Close() })
	return netlink.NsFd(f.Fd()), nil
}

// makeHost makes a named namespace standing in for a host, removed when
// the test ends.
func makeHost(tb testing.TB, suffix string) string {
	tb.Helper()
	name := fmt.Sprintf("shoal-xtest-%d-%s", os.Getpid(), suffix)
	ns, err := newNamedNS(name)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Close()
	tb.Cleanup(func() { _ = deleteNamespace(name) })
	return name
}

// startHost runs TestCrossNodeHelper in host's namespace and returns the
// namespace paths of its tasks by task ID once they listen. The helper destroys
// its node when its stdin closes, at the end of the test.
func startHost(tb testing.TB, host string, cfg hostConfig) map[string]string {
	tb.Helper()
	b, _ := json.Marshal(cfg)
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+netnsDir+"/"+host, "--", self, "-test.run=^TestCrossNodeHelper$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	var out strings.Builder
	ready := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if p, ok := strings.CutPrefix(line, helperReady); ok {
				ready <- p
			}
		}
	}()
	tb.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if err := cmd.Wait(); err != nil {
			tb.Errorf("node in %s: %v\n%s", host, err, out.String())
		}
	})
	select {
	case p := <-ready:
		paths := map[string]string{}
		if err := json.Unmarshal([]byte(p), &paths); err != nil {
			tb.Fatalf("node in %s: %q: %v", host, p, err)
		}
		return paths
	case <-done:
		tb.Fatalf("node in %s ended before its tasks listened", host)
	case <-time.After(30 * time.Second):
		tb.Fatalf("node in %s: its tasks do not listen after 30 s", host)
	}
	return nil
}

// TestCrossNodeHelper is one node of TestCrossNode; it runs only as
// TestCrossNode's child.
func TestCrossNodeHelper(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("run by TestCrossNode")
	}
	var cfg hostConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := linkUp("lo"); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{DataDir: cfg.DataDir, Bridge: cfg.Bridge})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Destroy(t.Context()); err != nil {
			t.Error(err)
		}
	}()
	var defs []Def
	for _, d := range cfg.Networks {
		defs = append(defs, Def{ID: d.ID, Subnet: netip.MustParsePrefix(d.Subnet), Slice: netip.MustParsePrefix(d.Slice)})
	}
	if err := n.SetNetworks(defs); err != nil {
		t.Fatal(err)
	}
	var peers []*shoalpb.NodeSubnet
	for _, p := range cfg.Peers {
		peers = append(peers, &shoalpb.NodeSubnet{NodeId: "peer", Subnet: p.Subnet, Ip: p.IP})
	}
	if err := n.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, ht := range cfg.Tasks {
		tk := task(ht.ID, "")
		for _, tn := range ht.Nets {
			tk.Networks = append(tk.Networks, &shoalpb.TaskNetwork{NetworkId: tn[0], Address: tn[1]})
		}
		a, err := n.Attach(t.Context(), tk)
		if err != nil {
			t.Fatal(err)
		}
		var l net.Listener
		if err := inNS(t, a.NetNSPath, func() (err error) {
			l, err = net.Listen("tcp4", ":7000")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go serveRemoteAddr(l)
		paths[ht.ID] = a.NetNSPath
	}
	b, _ := json.Marshal(paths)
	fmt.Printf("%s%s\n", helperReady, b)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test ends
}
