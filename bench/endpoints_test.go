package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// endpointCycles is how many scale-ups and scale-downs one run of
// BenchmarkEndpoints times.
const endpointCycles = 20

// endpointQueryInterval is how often the DNS client asks; it bounds the
// figures' resolution.
const endpointQueryInterval = time.Millisecond

// BenchmarkEndpoints measures service discovery end to end, as a client on
// another node sees it: a 3-node containerd cluster (1 manager, 2 workers,
// each in a network namespace of its own), one service of the test app's
// `serve` mode constrained to the first worker, without health check (so
// the task is ready the moment it runs, and its RUNNING status carries
// that moment). A DNS client in this process, its UDP socket made in the
// second worker's namespace, asks that node's DNS server (the gateway of
// its slice of the default network) for tasks.<service> every 1 ms.
//
//   - ready → resolvable: scale 1 → 2; from the new task's status
//     timestamp when ListTasks first shows it RUNNING and ready (set by
//     its agent's clock when it started; every node shares this machine's
//     clock) to the first answer holding its address.
//   - stopping → gone: scale 2 → 1; from the moment UpdateService
//     returned (the write is committed; the task's own record carries no
//     time of its desired-state change) to the first answer without one of
//     the two addresses. This includes the orchestrator's reaction: its
//     pass over the service and the write of the task's desired state.
//
// Each run times endpointCycles of each and reports their median and p99
// (nearest rank: of 20 samples, the largest).
func BenchmarkEndpoints(b *testing.B) {
	testutil.RequireRoot(b, "containerd", "runc", "ip", "iptables", "nsenter")
	c := testutil.NewCluster(b, 1, 2, testutil.WithHosts(), testutil.WithDaemonArgs("--runtime", "containerd"))
	m, host, querier := c.Managers[0], c.Workers[0], c.Workers[1]
	if _, err := m.Shoal(b, "image", "load", "-i", testutil.AppImageFile(b)); err != nil {
		b.Fatalf("image load: %v", err)
	}
	cli := readyControl(b, m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc, err := cli.CreateService(ctx, &shoalpb.CreateServiceRequest{Spec: &shoalpb.ServiceSpec{
		Name:     "endpoints",
		Mode:     shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas: 1,
		Task: &shoalpb.TaskSpec{
			Container: &shoalpb.ContainerSpec{
				Image: testutil.AppImageName,
				Args:  []string{"serve", "8080"},
				// No check: the task is ready as it starts, so its RUNNING
				// status's timestamp is its ready moment. (A probe's
				// verdict changes ready without a new timestamp.)
				Healthcheck: &shoalpb.HealthCheck{Test: []string{"NONE"}},
				// serve ignores SIGTERM; a short grace keeps the cycles
				// short (the task has left DNS long before its stop).
				StopGracePeriodMs: 500,
			},
			Placement: &shoalpb.Placement{Constraints: []string{"node.id==" + host.ID(b)}},
		},
	}})
	if err != nil {
		b.Fatalf("create the service: %v", err)
	}
	waitRunning(b, ctx, cli, svc.GetId(), 1)
	w := startDNSWatch(b, cli, querier, "tasks."+svc.GetSpec().GetName()+".")
	// The DNS client starts once the first task is there: it must see it
	// before the first cycle.
	first := liveTasks(b, ctx, cli, svc.GetId())
	w.waitFor(b, taskAddr(b, first[0]), true)

	b.Run("nodes=3", func(b *testing.B) {
		var up, down []float64
		for b.Loop() {
			for range endpointCycles {
				u := endpointsScaleUp(b, ctx, cli, w, svc.GetId())
				d := endpointsScaleDown(b, ctx, cli, w, svc.GetId())
				up, down = append(up, ms(u)), append(down, ms(d))
			}
		}
		queries, lost, refused := w.counts()
		b.Logf("ready → resolvable (ms): %.1f", up)
		b.Logf("stopping → gone (ms): %.1f", down)
		b.Logf("DNS client so far: %d queries, %d unanswered within 500 ms, %d answers not NOERROR", queries, lost, refused)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(median(up), "ready-to-dns-p50-ms")
		b.ReportMetric(p99(up), "ready-to-dns-p99-ms")
		b.ReportMetric(median(down), "stop-to-dns-p50-ms")
		b.ReportMetric(p99(down), "stop-to-dns-p99-ms")
	})
}

// endpointsScaleUp scales the service from 1 to 2 tasks and returns the
// time from the new task's ready moment to its first DNS answer.
func endpointsScaleUp(b *testing.B, ctx context.Context, cli shoalpb.ControlServiceClient, w *dnsWatch, serviceID string) time.Duration {
	b.Helper()
	before := liveTasks(b, ctx, cli, serviceID)
	if len(before) != 1 {
		b.Fatalf("scale-up starts with %d live tasks, want 1", len(before))
	}
	w.mark()
	endpointsScale(b, ctx, cli, serviceID, 2)
	var task *shoalpb.Task
	pollUntil(b, time.Now(), "new task RUNNING and ready", func(ctx context.Context) (bool, error) {
		for _, t := range liveTasks(b, ctx, cli, serviceID) {
			st := t.GetStatus()
			if t.GetId() != before[0].GetId() && st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && st.GetReady() && t.GetAddress() != "" {
				task = t
				return true, nil
			}
		}
		return false, nil
	})
	ready := task.GetStatus().GetTimestamp().AsTime()
	seen := w.waitFor(b, taskAddr(b, task), true)
	return seen.Sub(ready)
}

// endpointsScaleDown scales the service from 2 tasks to 1 and returns the
// time from UpdateService's return until one of the two addresses has left
// the DNS answer; it returns once the stopped task has ended.
func endpointsScaleDown(b *testing.B, ctx context.Context, cli shoalpb.ControlServiceClient, w *dnsWatch, serviceID string) time.Duration {
	b.Helper()
	before := liveTasks(b, ctx, cli, serviceID)
	if len(before) != 2 {
		b.Fatalf("scale-down starts with %d live tasks, want 2", len(before))
	}
	addrs := []netip.Addr{taskAddr(b, before[0]), taskAddr(b, before[1])}
	w.mark()
	start := endpointsScale(b, ctx, cli, serviceID, 1)
	gone, addr := w.waitForAny(b, addrs, false)
	waitRunning(b, ctx, cli, serviceID, 1)
	// The address that left must be the stopped task's, not a flap.
	after := liveTasks(b, ctx, cli, serviceID)
	if len(after) != 1 || taskAddr(b, after[0]) == addr {
		b.Fatalf("DNS dropped %s, but the task left running is %v", addr, after)
	}
	return gone.Sub(start)
}

// endpointsScale sets the service's replicas and returns when the write
// returned.
func endpointsScale(b *testing.B, ctx context.Context, cli shoalpb.ControlServiceClient, serviceID string, replicas uint64) time.Time {
	b.Helper()
	svc, err := cli.GetService(ctx, &shoalpb.GetServiceRequest{Service: serviceID})
	if err != nil {
		b.Fatalf("get service: %v", err)
	}
	spec := svc.GetSpec()
	spec.Replicas = replicas
	if _, err := cli.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: serviceID, Version: svc.GetMeta().GetVersion(), Spec: spec}); err != nil {
		b.Fatalf("scale to %d: %v", replicas, err)
	}
	return time.Now()
}

// liveTasks returns the service's tasks that are desired RUNNING and have
// not ended.
func liveTasks(b *testing.B, ctx context.Context, cli shoalpb.ControlServiceClient, serviceID string) []*shoalpb.Task {
	b.Helper()
	resp, err := cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": serviceID}})
	if err != nil {
		b.Fatalf("list tasks: %v", err)
	}
	var out []*shoalpb.Task
	for _, t := range resp.GetTasks() {
		if t.GetDesiredState() == shoalpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE {
			out = append(out, t)
		}
	}
	return out
}

// taskAddr is the task's address on its primary network.
func taskAddr(b *testing.B, t *shoalpb.Task) netip.Addr {
	b.Helper()
	p, err := netip.ParsePrefix(t.GetAddress())
	if err != nil {
		b.Fatalf("task %s has address %q: %v", t.GetId(), t.GetAddress(), err)
	}
	return p.Addr()
}

// p99 is the 99th percentile of samples (nearest rank, as writes_test's
// percentile): of 20 samples, the largest.
func p99(samples []float64) float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	return percentile(s, 0.99)
}

// dnsWatch asks one node's DNS server for one name every
// endpointQueryInterval and records when each address enters or leaves the
// answer.
type dnsWatch struct {
	name string

	mu                     sync.Mutex
	present                map[netip.Addr]bool // in the last answer
	events                 []dnsEvent          // since the last mark
	queries, lost, refused int
	err                    error // why the client stopped
}

// dnsEvent is an address entering (present) or leaving the answer, at the
// time the answer that showed it arrived.
type dnsEvent struct {
	addr    netip.Addr
	present bool
	at      time.Time
}

// startDNSWatch starts asking n's DNS server, on the gateway of n's slice
// of the default network, for name (A) from a UDP socket made in n's
// network namespace. It stops when b ends.
func startDNSWatch(b *testing.B, cli shoalpb.ControlServiceClient, n *testutil.Node, name string) *dnsWatch {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	view, err := cli.GetNode(ctx, &shoalpb.GetNodeRequest{Node: n.ID(b)})
	if err != nil {
		b.Fatalf("get node %s: %v", n.Name, err)
	}
	subnet, err := netip.ParsePrefix(view.GetNode().GetSubnet())
	if err != nil {
		b.Fatalf("node %s has subnet %q: %v", n.Name, view.GetNode().GetSubnet(), err)
	}
	server := netip.AddrPortFrom(subnet.Masked().Addr().Next(), 53).String()
	conn, err := n.Dial(ctx, "udp", server)
	if err != nil {
		b.Fatalf("DNS socket in %s's namespace to %s: %v", n.Name, server, err)
	}
	w := &dnsWatch{name: name, present: map[netip.Addr]bool{}}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(runCtx, &dns.Conn{Conn: conn})
	}()
	b.Cleanup(func() {
		stop()
		<-done
		conn.Close()
	})
	return w
}

func (w *dnsWatch) run(ctx context.Context, conn *dns.Conn) {
	tick := time.NewTicker(endpointQueryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		addrs, ok, err := w.ask(conn)
		at := time.Now()
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		w.queries++
		if ok {
			w.record(addrs, at)
		}
		w.mu.Unlock()
	}
}

// ask sends one query and reads its answer; ok is false when none came in
// time or it was not NOERROR (counted, not recorded: an address missing
// from a lost answer has not left).
func (w *dnsWatch) ask(conn *dns.Conn) (addrs map[netip.Addr]bool, ok bool, err error) {
	q := new(dns.Msg)
	q.SetQuestion(w.name, dns.TypeA)
	if err := conn.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		return nil, false, err
	}
	if err := conn.WriteMsg(q); err != nil {
		return nil, false, fmt.Errorf("send a query: %w", err)
	}
	for {
		r, err := conn.ReadMsg()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.mu.Lock()
			w.lost++
			w.mu.Unlock()
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("read an answer: %w", err)
		}
		if r.Id != q.Id {
			continue // the late answer of a query counted lost
		}
		if r.Rcode != dns.RcodeSuccess {
			w.mu.Lock()
			w.refused++
			w.mu.Unlock()
			return nil, false, nil
		}
		addrs = map[netip.Addr]bool{}
		for _, rr := range r.Answer {
			if a, isA := rr.(*dns.A); isA {
				if ip, good := netip.AddrFromSlice(a.A.To4()); good {
					addrs[ip] = true
				}
			}
		}
		return addrs, true, nil
	}
}

// record notes the addresses that entered or left the answer. w.mu is held.
func (w *dnsWatch) record(addrs map[netip.Addr]bool, at time.Time) {
	for a := range addrs {
		if !w.present[a] {
			w.events = append(w.events, dnsEvent{addr: a, present: true, at: at})
		}
	}
	for a := range w.present {
		if !addrs[a] {
			w.events = append(w.events, dnsEvent{addr: a, present: false, at: at})
		}
	}
	w.present = addrs
}

// mark forgets the events so far: waits after it see only later ones.
func (w *dnsWatch) mark() {
	w.mu.Lock()
	w.events = nil
	w.mu.Unlock()
}

// waitFor returns when addr first entered (present) or left the answer
// since the last mark, or since the client started; it fails b after
// eventTimeout.
func (w *dnsWatch) waitFor(b *testing.B, addr netip.Addr, present bool) time.Time {
	b.Helper()
	at, _ := w.waitForAny(b, []netip.Addr{addr}, present)
	return at
}

// waitForAny is waitFor for the first of several addresses; it also
// returns which one it was.
func (w *dnsWatch) waitForAny(b *testing.B, addrs []netip.Addr, present bool) (time.Time, netip.Addr) {
	b.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		w.mu.Lock()
		for _, e := range w.events {
			if e.present == present && slices.Contains(addrs, e.addr) {
				w.mu.Unlock()
				return e.at, e.addr
			}
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			b.Fatalf("DNS client for %s stopped: %v", w.name, err)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: none of %v %s within %s", w.name, addrs, map[bool]string{true: "answered", false: "gone"}[present], eventTimeout)
		}
		time.Sleep(endpointQueryInterval)
	}
}

// counts returns the queries sent, those unanswered in time and the
// answers that were not NOERROR.
func (w *dnsWatch) counts() (queries, lost, refused int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queries, w.lost, w.refused
}
