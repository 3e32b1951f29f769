package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// dnsLookup runs `shoal dns lookup` on n and returns the rcode of its
// header line and the answers' data (-q would drop the header), sorted.
func dnsLookup(t *testing.T, n *testutil.Node, args ...string) (header, rcode string, data []string, err error) {
	t.Helper()
	out, err := n.Shoal(t, append([]string{"dns", "lookup"}, args...)...)
	if err != nil {
		return "", "", nil, err
	}
	for l := range strings.Lines(out) {
		l = strings.TrimRight(l, "\n")
		switch {
		case strings.HasPrefix(l, ";; node "):
			header = l
			rcode = l[strings.LastIndex(l, " ")+1:]
		case strings.HasPrefix(l, ";;"), l == "":
		default:
			f := strings.SplitN(l, "\t", 5)
			if len(f) != 5 {
				return "", "", nil, fmt.Errorf("dns lookup %v printed %q, not a record", args, l)
			}
			data = append(data, f[4])
		}
	}
	if header == "" {
		return "", "", nil, fmt.Errorf("dns lookup %v printed no ';; node' line:\n%s", args, out)
	}
	slices.Sort(data)
	return header, rcode, data, nil
}

// `shoal dns lookup` answers as a node's DNS server does, on the node asked
// or (through a manager) on another; `service inspect` lists the service's
// current endpoints.
func TestDNSLookup(t *testing.T) {
	c := containerCluster(t, 1, 2)
	m, w := c.Managers[0], c.Workers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, "image", "load", "-i", testutil.AppImageFile(t))
	mustShoal(t, m, "network", "create", "other")
	// No health check: on a loaded machine its timeouts would restart the
	// tasks under the test.
	mustShoal(t, m, "service", "create", "--name", "who", "--replicas", "2", "--replicas-max-per-node", "1",
		"--no-healthcheck", testutil.AppImageName, "sleep")
	waitConverged(t, api, "who", 2, convergeTimeout)
	svc, err := api.GetService(t.Context(), &shoalpb.GetServiceRequest{Service: "who"})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.GetEndpoint().GetVip()
	// endpointIPs are the addresses of who's tasks that are endpoints now.
	endpointIPs := func() []string {
		t.Helper()
		tasks, err := tasksOf(api, "who")
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, task := range tasks {
			if task.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING && task.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_RUNNING &&
				task.GetStatus().GetReady() && task.GetAddress() != "" {
				ips = append(ips, taskIP(t, task))
			}
		}
		slices.Sort(ips)
		if len(ips) == 0 {
			// Never what a lookup prints: the check waits for endpoints.
			return []string{"(no endpoint yet)"}
		}
		return ips
	}
	fixed := func(v ...string) func() []string { return func() []string { return v } }
	nodes, err := api.ListNodes(t.Context(), &shoalpb.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // cluster address → node ID
	for _, v := range nodes.GetNodes() {
		ids[v.GetNode().GetStatus().GetAddr()] = v.GetNode().GetId()
	}
	managerID, workerID := ids[m.Addr], ids[w.Addr]
	if managerID == "" || workerID == "" {
		t.Fatalf("nodes %v lack the manager %s or the worker %s", ids, m.Addr, w.Addr)
	}

	// expect polls until the lookup on n answers rcode and data from the
	// node whose ID the header names: the endpoints reach every node's DNS
	// asynchronously.
	expect := func(n *testutil.Node, nodeID, rcode string, wantFn func() []string, args ...string) {
		t.Helper()
		testutil.Eventually(t, convergeTimeout, func() error {
			header, got, data, err := dnsLookup(t, n, args...)
			if err != nil {
				return err
			}
			want := wantFn()
			if !strings.Contains(header, "("+nodeID+")") || got != rcode || !slices.Equal(data, want) {
				return fmt.Errorf("on %s: dns lookup %v = %q %v, want node %s, %s %v", n.Name, args, header, data, nodeID, rcode, want)
			}
			return nil
		})
	}

	t.Run("the manager answers the VIP", func(t *testing.T) {
		expect(m, managerID, "NOERROR", fixed(vip), "who")
		expect(m, managerID, "NOERROR", fixed(vip), "--network", "default", "who")
		expect(m, managerID, "NOERROR", endpointIPs, "tasks.who")
		expect(m, managerID, "NOERROR", fixed(), "--type", "AAAA", "who")
		out := mustShoal(t, m, "dns", "lookup", "-q", "who")
		if strings.TrimSpace(out) != vip {
			t.Errorf("dns lookup -q who printed %q, want only %s", out, vip)
		}
	})
	t.Run("another node through the manager", func(t *testing.T) {
		expect(m, workerID, "NOERROR", fixed(vip), "--node", workerID, "who")
		expect(m, workerID, "NOERROR", endpointIPs, "--node", workerID[:8], "tasks.who")
		expect(m, workerID, "NXDOMAIN", fixed(), "--node", workerID, "--network", "other", "who")
		// A worker answers for itself, and sends the user to a manager
		// for the others.
		expect(w, workerID, "NOERROR", fixed(vip), "who")
		_, err := w.Shoal(t, "dns", "lookup", "--node", managerID, "who")
		wantError(t, "dns lookup --node MANAGER on a worker", err, "worker", "ask a manager")
	})
	t.Run("names that do not exist", func(t *testing.T) {
		// who exists, but not on other: NXDOMAIN (an answer, exit 0).
		expect(m, managerID, "NXDOMAIN", fixed(), "--network", "other", "who")
		// A name outside the cluster goes to the host's resolvers: their
		// answer (NXDOMAIN, or SERVFAIL if none is reachable from the
		// test host) is an answer too, and says it was forwarded.
		out := mustShoal(t, m, "dns", "lookup", "nosuch.invalid")
		if !strings.Contains(out, "not a cluster name") || !(strings.Contains(out, "NXDOMAIN") || strings.Contains(out, "SERVFAIL")) {
			t.Errorf("dns lookup nosuch.invalid printed:\n%s", out)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		_, err := m.Shoal(t, "dns", "lookup", "--type", "BOGUS", "who")
		wantError(t, "dns lookup --type BOGUS", err, "--type", "BOGUS")
		_, err = m.Shoal(t, "dns", "lookup", "--node", "nosuchnode", "who")
		wantError(t, "dns lookup --node nosuchnode", err, "nosuchnode", "shoal node ls")
		_, err = m.Shoal(t, "dns", "lookup", "--network", "nosuchnet", "who")
		wantError(t, "dns lookup --network nosuchnet", err, "--network", "nosuchnet")
	})
	t.Run("service inspect shows the endpoints", func(t *testing.T) {
		testutil.Eventually(t, convergeTimeout, func() error {
			var want []string
			for _, ip := range endpointIPs() {
				want = append(want, "default="+ip)
			}
			out := mustShoal(t, m, "service", "inspect", "--format",
				`{{.EndpointMode}} {{.Endpoint.Vip}}\n{{range .Endpoints}}{{range .Addresses}}{{.Network}}={{.Address}}\n{{end}}{{end}}`, "who")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if lines[0] != "vip "+vip {
				return fmt.Errorf("service inspect: endpoint mode and VIP %q, want \"vip %s\"", lines[0], vip)
			}
			got := slices.Sorted(slices.Values(lines[1:]))
			if !slices.Equal(got, want) {
				return fmt.Errorf("service inspect endpoints %v, want %v", got, want)
			}
			return nil
		})
		out := mustShoal(t, m, "service", "inspect", "who")
		for _, part := range []string{`"endpoints"`, `"endpointMode": "vip"`, `"network": "default"`, vip} {
			if !strings.Contains(out, part) {
				t.Errorf("service inspect JSON lacks %s:\n%s", part, out)
			}
		}
	})
}
