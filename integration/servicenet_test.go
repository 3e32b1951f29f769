package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// digFrom runs the real dig inside a task's network namespace against its
// node's DNS server (the address its resolv.conf names) and returns the
// answers of +short, sorted.
func digFrom(t *testing.T, task *shoalpb.Task, args ...string) ([]string, error) {
	t.Helper()
	ns := taskNetNS(t, task.GetId())
	server := dnsServerOf(t, task)
	cmd := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + ns, "--", "dig", "+short", "+time=2", "+tries=1", "@" + server}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dig %v in task %s: %v: %s", args, task.GetId(), err, out)
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines, nil
}

// taskNetNS is the name of the network namespace the node made for a task.
func taskNetNS(t *testing.T, taskID string) string {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-"+taskID) {
			return e.Name()
		}
	}
	t.Fatalf("no network namespace for task %s", taskID)
	return ""
}

// dnsServerOf is the node DNS server a task uses: its subnet's gateway.
func dnsServerOf(t *testing.T, task *shoalpb.Task) string {
	t.Helper()
	p, err := netip.ParsePrefix(task.GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	return p.Masked().Addr().Next().String()
}

// Services find each other by name across hosts, reach each other through
// their VIP, and reach the outside through the routing mesh on any node,
// which tells the task who the client is; a task leaves DNS before it is
// sent its stop signal.
func TestServiceNetworking(t *testing.T) {
	c := containerCluster(t, 1, 2, testutil.WithHostDNS(upstreamPort))
	m := c.Managers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))

	mustShoal(t, m, "service", "create", "--name", "who", "--replicas", "3", "--replicas-max-per-node", "1",
		"--stop-grace-period", "3s",
		"--publish", "published=8090,target=8080,mesh=http", "--publish", "published=8091,target=9000,proxy-protocol=v1",
		testutil.AppImageName, "serve", "8080", "9000")
	who := waitConverged(t, api, "who", 3, convergeTimeout)
	mustShoal(t, m, "service", "create", "--name", "client", "--constraint", "node.id=="+who[0].GetNodeId(),
		"--no-healthcheck", testutil.AppImageName, "sleep")
	client := waitConverged(t, api, "client", 1, convergeTimeout)[0]
	svc, err := api.GetService(t.Context(), &shoalpb.GetServiceRequest{Service: "who"})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.GetEndpoint().GetVip()
	var ips []string
	for _, task := range who {
		ips = append(ips, taskIP(t, task))
	}
	slices.Sort(ips)

	t.Run("names", func(t *testing.T) {
		expect := func(args []string, want ...string) {
			t.Helper()
			testutil.Eventually(t, convergeTimeout, func() error {
				got, err := digFrom(t, client, args...)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("dig %v = %v, want %v", args, got, want)
				}
				return nil
			})
		}
		expect([]string{"who"}, vip)
		expect([]string{"WHO"}, vip)
		expect([]string{"tasks.who"}, ips...)
		expect([]string{fmt.Sprintf("who.%d.%s", who[1].GetSlot(), who[1].GetId())}, taskIP(t, who[1]))
		expect([]string{"who", "AAAA"}) // an IPv4-only name: no answer, no error
	})

	t.Run("names outside the cluster go to the node's upstream", func(t *testing.T) {
		// "/invalid/": the upstream answers NXDOMAIN for that domain.
		startDnsmasq(t, c.Gateway(), upstreamPort, "/outside.test/192.0.2.77", "/invalid/")
		testutil.Eventually(t, convergeTimeout, func() error {
			got, err := digFrom(t, client, "www.outside.test")
			if err != nil {
				return err
			}
			if !slices.Equal(got, []string{"192.0.2.77"}) {
				return fmt.Errorf("dig www.outside.test = %v, want the upstream's 192.0.2.77", got)
			}
			return nil
		})
		if st, err := digStatus(t, client, "nothing.invalid"); err != nil || st != "NXDOMAIN" {
			t.Errorf("a name the upstream says does not exist: status %q, %v; want its NXDOMAIN", st, err)
		}
	})

	t.Run("VIP balances over the ready tasks", func(t *testing.T) {
		seen := map[string]bool{}
		hc := c.Workers[0].HTTPClient()
		testutil.Eventually(t, convergeTimeout, func() error {
			for range 30 {
				body, err := get(hc, mustRequest(t, "http://"+vip+":8080/"))
				if err != nil {
					return err
				}
				seen[strings.TrimSpace(body)] = true
			}
			if len(seen) != 3 {
				return fmt.Errorf("VIP %s reached tasks %v, want all 3", vip, seen)
			}
			return nil
		})
	})

	t.Run("the mesh answers on every node and keeps the client address", func(t *testing.T) {
		for _, n := range c.Nodes() {
			var local string
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() }}
			req := mustRequest(t, "http://"+n.IP+":8090/client").WithContext(httptrace.WithClientTrace(t.Context(), trace))
			var body string
			testutil.Eventually(t, convergeTimeout, func() (err error) { body, err = get(httpClient, req); return err })
			clientIP, _, _ := net.SplitHostPort(local)
			if !strings.Contains(body, "xff="+clientIP+" ") || !strings.Contains(body, "proto=http") {
				t.Errorf("node %s, HTTP mode: the task saw %q, want X-Forwarded-For %s and X-Forwarded-Proto http", n.Name, body, clientIP)
			}

			conn, err := net.DialTimeout("tcp", n.IP+":8091", 10*time.Second)
			if err != nil {
				t.Fatalf("node %s: %v", n.Name, err)
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err != nil && err != io.EOF {
				t.Fatalf("node %s: %v", n.Name, err)
			}
			clientIP, clientPort, _ := net.SplitHostPort(conn.LocalAddr().String())
			want := fmt.Sprintf(`first="PROXY TCP4 %s %s %s 8091\r\n"`, clientIP, n.IP, clientPort)
			if !strings.HasPrefix(line, want) {
				t.Errorf("node %s, PROXY v1: the task read %q, want it to start with %s", n.Name, line, want)
			}
		}
	})

	t.Run("a task leaves DNS and the VIP before its stop signal", func(t *testing.T) {
		// New connections to the VIP from another node all the while: none
		// may be sent to the task that stops.
		load := testutil.StartLoad(t, testutil.LoadConfig{URL: "http://" + vip + ":8080/", Workers: 4,
			Pace: 20 * time.Millisecond, Timeout: 30 * time.Second, Dial: c.Workers[0].Dial})
		testutil.Eventually(t, convergeTimeout, func() error {
			if rep := load.Report(); rep.Requests-rep.Failed < 20 {
				return fmt.Errorf("the VIP answered %d requests so far", rep.Requests-rep.Failed)
			}
			return nil
		})
		if rep := load.Report(); rep.Failed > 0 {
			t.Fatalf("the VIP failed requests before anything stopped: %s", rep)
		}
		scaledAt := time.Now()
		mustShoal(t, m, "service", "scale", "--detach", "who=2")
		// lastSeen: when the last query that still answered a task began.
		lastSeen := map[string]time.Time{}
		var gone *shoalpb.Task
		var absentAt time.Time // when the first query that no longer answered it began
		testutil.Eventually(t, convergeTimeout, func() error {
			asked := time.Now()
			got, err := digFrom(t, client, "tasks.who")
			if err != nil {
				return err
			}
			for _, task := range who {
				if slices.Contains(got, taskIP(t, task)) {
					lastSeen[task.GetId()] = asked
				} else if gone == nil {
					gone, absentAt = task, asked
				}
			}
			if gone == nil {
				return fmt.Errorf("tasks.who = %v, still all of %v", got, ips)
			}
			return nil
		})
		sigterm := regexp.MustCompile(`got SIGTERM at (\d+)`)
		var at time.Time
		testutil.Eventually(t, convergeTimeout, func() error {
			out, err := m.Shoal(t, "service", "logs", "who")
			if err != nil {
				return err
			}
			for l := range strings.Lines(out) {
				if strings.Contains(l, gone.GetId()) {
					if mm := sigterm.FindStringSubmatch(l); mm != nil {
						ns, _ := strconv.ParseInt(mm[1], 10, 64)
						at = time.Unix(0, ns)
						return nil
					}
				}
			}
			return fmt.Errorf("no SIGTERM logged by task %s yet", gone.GetId())
		})
		if !absentAt.Before(at) {
			t.Errorf("task %s got its SIGTERM at %s, before DNS dropped it (%s)", gone.GetId(), at.Format(time.StampMicro), absentAt.Format(time.StampMicro))
		}
		if seen := lastSeen[gone.GetId()]; !seen.Before(at) {
			t.Errorf("task %s was still in DNS at %s, after its SIGTERM at %s (scaled down at %s)", gone.GetId(), seen.Format(time.StampMicro), at.Format(time.StampMicro), scaledAt.Format(time.StampMicro))
		}
		waitTasks(t, api, "who", convergeTimeout, func(tasks []*shoalpb.Task) error {
			for _, task := range tasks {
				if task.GetId() == gone.GetId() && task.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE {
					return fmt.Errorf("task %s is %s, not stopped yet", task.GetId(), task.GetStatus().GetState())
				}
			}
			return nil
		})
		if rep := load.Stop(); rep.Failed > 0 {
			t.Errorf("the VIP sent connections to the stopping task %s: %s", gone.GetId(), rep)
		} else {
			t.Logf("VIP under load while a task stopped: %s", rep)
		}
	})
}

// upstreamPort is where the test's own resolver listens for the nodes.
const upstreamPort = 5354

// startDnsmasq runs dnsmasq on addr:port until the test ends, answering
// the names of each address rule ("/domain/ip"; "/domain/": NXDOMAIN) and
// refusing the rest.
func startDnsmasq(t *testing.T, addr string, port int, rules ...string) {
	t.Helper()
	args := []string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=" + addr, "--port=" + strconv.Itoa(port), "--pid-file=", "--log-facility=-"}
	for _, r := range rules {
		args = append(args, "--address="+r)
	}
	cmd := exec.Command("dnsmasq", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v (install dnsmasq-base)", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
