package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// inTaskNS runs fn on a thread that is in the network namespace of task:
// the sockets fn opens are the task's.
func inTaskNS(t *testing.T, task *shoalpb.Task, fn func() error) error {
	t.Helper()
	target, err := netns.GetFromName(taskNetNS(t, task.GetId()))
	if err != nil {
		return err
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		// The thread is left locked if it cannot be put back: it ends
		// with the goroutine instead of serving others in the wrong
		// namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			done <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// httpFrom GETs http://addr/ from inside task's network namespace and
// returns the body. The connection is dialed on the namespace's thread
// (an http.Transport would dial on a goroutine of its own, elsewhere).
func httpFrom(t *testing.T, task *shoalpb.Task, addr string) (string, error) {
	var body string
	err := inTaskNS(t, task, func() error {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = strings.TrimSpace(string(b))
		return err
	})
	return body, err
}

// blockedFrom checks that task cannot open a TCP connection to addr: the
// connection is refused or gets no answer within a short time.
func blockedFrom(t *testing.T, task *shoalpb.Task, addr string) error {
	return inTaskNS(t, task, func() error {
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			conn.Close()
			return fmt.Errorf("task %s reached %s", task.GetId(), addr)
		}
		return nil
	})
}

// digStatus is the status of a real dig inside task's namespace
// (NOERROR, NXDOMAIN, …).
func digStatus(t *testing.T, task *shoalpb.Task, name string) (string, error) {
	out, err := exec.Command("nsenter", "--net=/var/run/netns/"+taskNetNS(t, task.GetId()), "--",
		"dig", "+time=2", "+tries=1", "@"+dnsServerOf(t, task), name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dig %s: %v: %s", name, err, out)
	}
	for l := range strings.Lines(string(out)) {
		if _, rest, ok := strings.Cut(l, "status: "); ok {
			st, _, _ := strings.Cut(rest, ",")
			return st, nil
		}
	}
	return "", fmt.Errorf("dig %s printed no status: %s", name, out)
}

// addrOn is task's address on the network with that ID.
func addrOn(t *testing.T, task *shoalpb.Task, networkID string) string {
	t.Helper()
	for _, n := range task.GetNetworks() {
		if n.GetNetworkId() == networkID {
			ip, _, _ := strings.Cut(n.GetAddress(), "/")
			return ip
		}
	}
	t.Fatalf("task %s has no address on network %s: %v", task.GetId(), networkID, task.GetNetworks())
	return ""
}

// Networks keep services apart: tasks on one network reach each other by
// name, VIP and address across nodes; a task on another network neither
// resolves nor reaches them. A bad network is refused and changes nothing.
func TestNetworks(t *testing.T) {
	c := containerCluster(t, 1, 2)
	m := c.Managers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))

	backID := strings.TrimSpace(mustShoal(t, m, "network", "create", "back"))
	before := mustShoal(t, m, "network", "ls")
	if out, err := m.Shoal(t, "network", "create", "--subnet", "10.90.0.0/24", "tiny"); err == nil || !strings.Contains(err.Error()+out, "--subnet") {
		t.Fatalf("a network too small for per-node slices was not refused naming --subnet: %v: %s", err, out)
	}
	if out, err := m.Shoal(t, "service", "create", "--name", "lost", "--network", "nowhere", testutil.AppImageName, "sleep"); err == nil || !strings.Contains(err.Error()+out, "--network") {
		t.Fatalf("a service on an unknown network was not refused naming --network: %v: %s", err, out)
	}
	if after := mustShoal(t, m, "network", "ls"); after != before {
		t.Fatalf("refused creates changed the networks:\n%s\nthen\n%s", before, after)
	}
	if !strings.Contains(before, "back") || !strings.Contains(before, "default") {
		t.Fatalf("network ls:\n%s", before)
	}

	// db: two tasks on back, on two nodes, also called "database" there.
	mustShoal(t, m, "service", "create", "--name", "db", "--replicas", "2", "--replicas-max-per-node", "1",
		"--network", "name=back,alias=database", testutil.AppImageName, "serve", "8080", "9000")
	db := waitConverged(t, api, "db", 2, convergeTimeout)
	// app: on the default network (its primary one) and back, on a node
	// without db[0]. Its route to a VIP leaves from its default address,
	// so a VIP must still send it to db's address on back.
	mustShoal(t, m, "service", "create", "--name", "app", "--network", "default", "--network", "back",
		"--constraint", "node.id!="+db[0].GetNodeId(), "--no-healthcheck", testutil.AppImageName, "sleep")
	app := waitConverged(t, api, "app", 1, convergeTimeout)[0]
	// web: the default network only.
	mustShoal(t, m, "service", "create", "--name", "web", "--no-healthcheck", testutil.AppImageName, "sleep")
	web := waitConverged(t, api, "web", 1, convergeTimeout)[0]
	svc, err := api.GetService(t.Context(), &shoalpb.GetServiceRequest{Service: "db"})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.GetEndpoint().GetVip()
	var dbAddrs []string
	for _, task := range db {
		dbAddrs = append(dbAddrs, addrOn(t, task, backID))
	}
	slices.Sort(dbAddrs)

	t.Run("names resolve on the network only", func(t *testing.T) {
		testutil.Eventually(t, convergeTimeout, func() error {
			for name, want := range map[string][]string{"db": {vip}, "database": {vip}, "tasks.db": dbAddrs} {
				got, err := digFrom(t, app, name)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("from app: dig %s = %v, want %v", name, got, want)
				}
			}
			for _, name := range []string{"db", "database", "tasks.db"} {
				st, err := digStatus(t, web, name)
				if err != nil {
					return err
				}
				if st != "NXDOMAIN" {
					return fmt.Errorf("from web (not on back): dig %s status %s, want NXDOMAIN", name, st)
				}
			}
			if got, err := digFrom(t, web, "app"); err != nil || len(got) != 1 {
				return fmt.Errorf("from web: dig app = %v, %v; want app's VIP (they share the default network)", got, err)
			}
			return nil
		})
	})

	t.Run("tasks on one network reach each other across nodes", func(t *testing.T) {
		for _, task := range db {
			addr := addrOn(t, task, backID)
			testutil.Eventually(t, convergeTimeout, func() error {
				body, err := httpFrom(t, app, addr+":8080")
				if err != nil {
					return fmt.Errorf("app → db task %s at %s: %w", task.GetId(), addr, err)
				}
				if body == "" {
					return fmt.Errorf("app → db task %s: empty answer", task.GetId())
				}
				return nil
			})
		}
		seen := map[string]bool{}
		testutil.Eventually(t, convergeTimeout, func() error {
			body, err := httpFrom(t, app, vip+":8080")
			if err != nil {
				return fmt.Errorf("app → db's VIP %s: %w", vip, err)
			}
			seen[body] = true
			if len(seen) < 2 {
				return fmt.Errorf("db's VIP reached %v so far, want both tasks", seen)
			}
			return nil
		})
	})

	t.Run("a task on another network cannot reach them", func(t *testing.T) {
		// The same connections that work from app fail from web.
		for _, task := range db {
			if err := blockedFrom(t, web, addrOn(t, task, backID)+":8080"); err != nil {
				t.Error(err)
			}
		}
		if err := blockedFrom(t, web, vip+":8080"); err != nil {
			t.Error(err)
		}
	})

	t.Run("a network in use is not removed", func(t *testing.T) {
		out, err := m.Shoal(t, "network", "rm", "back")
		if err == nil || !strings.Contains(err.Error(), "db") || !strings.Contains(err.Error(), "app") {
			t.Fatalf("network rm of a network in use: %v: %s; want a refusal naming db and app", err, out)
		}
		mustShoal(t, m, "service", "rm", "db", "app")
		mustShoal(t, m, "network", "rm", "back")
		if out := mustShoal(t, m, "network", "ls"); strings.Contains(out, "back") {
			t.Fatalf("back still listed after rm:\n%s", out)
		}
	})
}
