package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"shoal/internal/testutil"
)

// listenOnHost opens a TCP listener on addr in n's network namespace (its
// daemon's), as another program on that host would hold a port.
func listenOnHost(t *testing.T, n *testutil.Node, addr string) (net.Listener, error) {
	t.Helper()
	target, err := netns.GetFromPid(n.PID())
	if err != nil {
		return nil, err
	}
	defer target.Close()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread enters the namespace only to make the socket; left
		// in it, it stays locked and ends with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			done <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		} else if ln != nil {
			ln.Close()
			ln = nil
		}
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

// A port published in ingress mode that another process holds on one node:
// the service runs and every other node serves the port; service ps,
// service inspect and node inspect name that node and why; once the port
// is freed that node serves it too and the report goes away.
func TestPortConflict(t *testing.T) {
	const port = 8097
	c := containerCluster(t, 1, 2)
	m := c.Managers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))
	busy := c.Workers[1]
	held, err := listenOnHost(t, busy, ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("hold port %d on %s: %v", port, busy.Name, err)
	}
	t.Cleanup(func() { held.Close() })

	out := mustShoal(t, m, "service", "create", "--name", "pc", "--replicas", "2",
		"--publish", fmt.Sprintf("published=%d,target=8080", port), testutil.AppImageName, "serve", "8080", "9000")
	// The warning is printed when the node's report has arrived by the
	// time the service converged, and then once.
	t.Logf("service create printed:\n%s", out)
	if n := strings.Count(out, "warning: port"); n > 1 {
		t.Errorf("service create warned %d times:\n%s", n, out)
	}
	waitConverged(t, api, "pc", 2, convergeTimeout)

	t.Run("the other nodes serve the port", func(t *testing.T) {
		for _, n := range c.Nodes() {
			if n == busy {
				continue
			}
			req := mustRequest(t, fmt.Sprintf("http://%s:%d/", n.IP, port))
			testutil.Eventually(t, convergeTimeout, func() error { _, err := get(httpClient, req); return err })
		}
	})

	want := fmt.Sprintf("port %d/tcp not served on node ", port)
	t.Run("service ps names the node and why", func(t *testing.T) {
		testutil.Eventually(t, convergeTimeout, func() error {
			out, err := m.Shoal(t, "service", "ps", "pc")
			if err != nil {
				return err
			}
			var lines []string
			for l := range strings.Lines(out) {
				if strings.HasPrefix(l, want) {
					lines = append(lines, strings.TrimSpace(l))
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "("+busy.IP+")") || !strings.Contains(lines[0], "already in use") {
				return fmt.Errorf("service ps: want one line %q… naming %s and \"already in use\":\n%s", want, busy.IP, out)
			}
			return nil
		})
	})

	t.Run("service inspect and node inspect list it", func(t *testing.T) {
		var inspected []struct {
			PortErrors []struct {
				Port  uint32 `json:"port"`
				Addr  string `json:"addr"`
				Error string `json:"error"`
			} `json:"portErrors"`
		}
		if err := json.Unmarshal([]byte(mustShoal(t, m, "service", "inspect", "pc")), &inspected); err != nil {
			t.Fatal(err)
		}
		if len(inspected) != 1 || len(inspected[0].PortErrors) != 1 || inspected[0].PortErrors[0].Port != port ||
			inspected[0].PortErrors[0].Addr != busy.IP || !strings.Contains(inspected[0].PortErrors[0].Error, "already in use") {
			t.Errorf("service inspect: portErrors %+v, want port %d on %s", inspected, port, busy.IP)
		}
		if out := mustShoal(t, m, "node", "inspect", "--pretty", busy.ID(t)); !strings.Contains(out, fmt.Sprintf("  - %d/tcp: ", port)) {
			t.Errorf("node inspect --pretty of %s does not list port %d:\n%s", busy.Name, port, out)
		}
	})

	t.Run("a freed port is served and the report goes away", func(t *testing.T) {
		held.Close()
		req := mustRequest(t, fmt.Sprintf("http://%s:%d/", busy.IP, port))
		testutil.Eventually(t, convergeTimeout, func() error {
			if _, err := get(httpClient, req); err != nil {
				return err
			}
			out, err := m.Shoal(t, "service", "ps", "pc")
			if err != nil {
				return err
			}
			if strings.Contains(out, want) {
				return errors.New("service ps still reports the port:\n" + out)
			}
			return nil
		})
	})
}
