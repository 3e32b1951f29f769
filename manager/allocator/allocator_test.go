package allocator

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	shoalpb "shoal/proto"
)

func TestParsePool(t *testing.T) {
	for _, c := range []struct {
		cidr    string
		bits    uint32
		want    string // pool, or "" when refused
		errHave []string
	}{
		{cidr: "10.200.0.0/16", bits: 24, want: "10.200.0.0/16"},
		{cidr: "10.200.7.9/16", bits: 24, want: "10.200.0.0/16"}, // masked
		{cidr: "10.0.0.0/8", bits: 16, want: "10.0.0.0/8"},
		{cidr: "10.0.0.0/28", bits: 29, want: "10.0.0.0/28"},
		{cidr: "10.200.0.0", bits: 24, errHave: []string{"--task-pool", "not an IPv4 CIDR", DefaultTaskPool}},
		{cidr: "fd00::/64", bits: 24, errHave: []string{"--task-pool", "not an IPv4 CIDR"}},
		{cidr: "10.200.0.0/16", bits: 30, errHave: []string{"--node-subnet-size 30", "between 16 and 29"}},
		{cidr: "10.200.0.0/16", bits: 8, errHave: []string{"--node-subnet-size 8", "between 16 and 29"}},
		{cidr: "10.200.0.0/24", bits: 24, errHave: []string{"--node-subnet-size 24", "not longer than --task-pool 10.200.0.0/24", "larger pool"}},
	} {
		t.Run(fmt.Sprintf("%s_%d", c.cidr, c.bits), func(t *testing.T) {
			p, err := ParsePool(c.cidr, c.bits, FlagNames)
			if c.want != "" {
				if err != nil || p.String() != c.want || p.SubnetBits != int(c.bits) {
					t.Fatalf("got %v %v, want %s/%d", p, err, c.want, c.bits)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPool) {
				t.Fatalf("err = %v, want ErrInvalidPool", err)
			}
			for _, s := range c.errHave {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	if p, err := PoolOf(&shoalpb.ClusterSpec{}); err != nil || p.String() != DefaultTaskPool || p.SubnetBits != DefaultNodeSubnetBits {
		t.Errorf("PoolOf(unset) = %v %v, want the defaults", p, err)
	}
	if _, err := PoolOf(&shoalpb.ClusterSpec{TaskPool: "x"}); err == nil || !strings.Contains(err.Error(), "task_pool") {
		t.Errorf("PoolOf names the field: %v", err)
	}
}

func withSubnet(id, subnet string) *shoalpb.Node { return &shoalpb.Node{Id: id, Subnet: subnet} }

func TestSubnets(t *testing.T) {
	pool, err := ParsePool("10.200.0.0/16", 24, FieldNames)
	if err != nil {
		t.Fatal(err)
	}
	small, err := ParsePool("10.9.0.0/23", 24, FieldNames)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		pool  Pool
		nodes []*shoalpb.Node
		want  []string // successive Take results; "" = exhausted
	}{
		{name: "first subnet", pool: pool, want: []string{"10.200.0.0/24", "10.200.1.0/24"}},
		{name: "skips taken ones", pool: pool,
			nodes: []*shoalpb.Node{withSubnet("a", "10.200.0.0/24"), withSubnet("b", "10.200.2.0/24"), withSubnet("c", "")},
			want:  []string{"10.200.1.0/24", "10.200.3.0/24"}},
		// The node that held 10.200.0.0/24 was removed: it is not among the nodes.
		{name: "a removed node's subnet is reused", pool: pool,
			nodes: []*shoalpb.Node{withSubnet("b", "10.200.1.0/24")},
			want:  []string{"10.200.0.0/24", "10.200.2.0/24"}},
		{name: "subnets outside the pool are ignored", pool: small,
			nodes: []*shoalpb.Node{withSubnet("a", "10.200.0.0/24"), withSubnet("b", "bogus")},
			want:  []string{"10.9.0.0/24", "10.9.1.0/24", ""}},
		{name: "exhaustion", pool: small,
			nodes: []*shoalpb.Node{withSubnet("a", "10.9.0.0/24"), withSubnet("b", "10.9.1.0/24")},
			want:  []string{""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewSubnets(c.pool, c.nodes)
			for i, want := range c.want {
				got, ok := s.Take()
				if got != want || ok != (want != "") {
					t.Fatalf("take %d = %q %v, want %q", i, got, ok, want)
				}
			}
		})
	}
	msg := NewSubnets(small, nil).ExhaustedMessage("node-x")
	if want := "task pool 10.9.0.0/23 has no free /24 for node node-x; init the cluster with a larger --task-pool"; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if !NeedsSubnet(&shoalpb.NodeDescription{Runtime: "containerd"}, "") ||
		NeedsSubnet(&shoalpb.NodeDescription{Runtime: "containerd"}, "10.200.0.0/24") ||
		NeedsSubnet(&shoalpb.NodeDescription{Runtime: "process"}, "") || NeedsSubnet(nil, "") {
		t.Error("NeedsSubnet: only a containerd node without a subnet needs one")
	}
}

func addrTask(addr string, st shoalpb.TaskState) *shoalpb.Task {
	return &shoalpb.Task{Address: addr, Status: &shoalpb.TaskStatus{State: st}}
}

func takeAll(t *testing.T, a *Addresses) []string {
	t.Helper()
	var out []string
	for {
		addr, ok := a.Take()
		if !ok {
			if a.Free() != 0 {
				t.Fatalf("Take failed with %d free", a.Free())
			}
			return out
		}
		out = append(out, addr)
	}
}

func TestAddresses(t *testing.T) {
	const (
		running  = shoalpb.TaskState_TASK_STATE_RUNNING
		assigned = shoalpb.TaskState_TASK_STATE_ASSIGNED
		orphaned = shoalpb.TaskState_TASK_STATE_ORPHANED
	)
	for _, c := range []struct {
		name   string
		subnet string
		tasks  []*shoalpb.Task
		want   []string // every address Take gives, in order, until exhausted
	}{
		{name: "skips network, gateway and broadcast", subnet: "10.200.3.0/29",
			want: []string{"10.200.3.2/29", "10.200.3.3/29", "10.200.3.4/29", "10.200.3.5/29", "10.200.3.6/29"}},
		{name: "held addresses are skipped; the search starts after the highest", subnet: "10.200.3.0/29",
			tasks: []*shoalpb.Task{addrTask("10.200.3.2/29", running), addrTask("10.200.3.4/29", assigned)},
			want:  []string{"10.200.3.5/29", "10.200.3.6/29", "10.200.3.3/29"}},
		{name: "ended tasks release theirs", subnet: "10.200.3.0/29",
			tasks: []*shoalpb.Task{
				addrTask("10.200.3.2/29", shoalpb.TaskState_TASK_STATE_COMPLETE),
				addrTask("10.200.3.3/29", shoalpb.TaskState_TASK_STATE_SHUTDOWN),
				addrTask("10.200.3.4/29", shoalpb.TaskState_TASK_STATE_FAILED),
				addrTask("10.200.3.5/29", shoalpb.TaskState_TASK_STATE_REJECTED),
			},
			want: []string{"10.200.3.2/29", "10.200.3.3/29", "10.200.3.4/29", "10.200.3.5/29", "10.200.3.6/29"}},
		{name: "orphaned tasks keep theirs", subnet: "10.200.3.0/29",
			tasks: []*shoalpb.Task{addrTask("10.200.3.2/29", orphaned), addrTask("10.200.3.3/29", orphaned)},
			want:  []string{"10.200.3.4/29", "10.200.3.5/29", "10.200.3.6/29"}},
		{name: "exhausted", subnet: "10.200.3.0/29",
			tasks: []*shoalpb.Task{
				addrTask("10.200.3.2/29", running), addrTask("10.200.3.3/29", running), addrTask("10.200.3.4/29", running),
				addrTask("10.200.3.5/29", running), addrTask("10.200.3.6/29", orphaned),
			}},
		{name: "addresses of another subnet and bad ones are ignored", subnet: "10.200.3.0/29",
			tasks: []*shoalpb.Task{addrTask("10.200.4.2/29", running), addrTask("junk", running), addrTask("", running)},
			want:  []string{"10.200.3.2/29", "10.200.3.3/29", "10.200.3.4/29", "10.200.3.5/29", "10.200.3.6/29"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := NewAddresses(c.subnet, c.tasks)
			if err != nil {
				t.Fatal(err)
			}
			got := takeAll(t, a)
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("took %v, want %v", got, c.want)
			}
		})
	}

	// A /24 holds 253 task addresses, none of them .0, .1 or .255, each once.
	a, err := NewAddresses("10.200.3.0/24", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := takeAll(t, a)
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] || s == "10.200.3.0/24" || s == "10.200.3.1/24" || s == "10.200.3.255/24" {
			t.Fatalf("address %s given twice or reserved", s)
		}
		seen[s] = true
	}
	if len(got) != 253 {
		t.Errorf("a /24 gave %d addresses, want 253", len(got))
	}
	if msg, want := a.ExhaustedMessage("n1"), "node n1 has no free task address in 10.200.3.0/24"; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if _, err := NewAddresses("10.200.3.0/30", nil); err == nil {
		t.Error("a /30 node subnet was accepted")
	}
}

func TestCheckPoolKept(t *testing.T) {
	stored := &shoalpb.ClusterSpec{TaskPool: "10.200.0.0/16", NodeSubnetBits: 24}
	for _, c := range []struct {
		updated *shoalpb.ClusterSpec
		errHave string
	}{
		{updated: &shoalpb.ClusterSpec{}},
		{updated: &shoalpb.ClusterSpec{TaskPool: "10.200.0.0/16", NodeSubnetBits: 24, TaskHistoryLimit: 9}},
		{updated: &shoalpb.ClusterSpec{TaskPool: "10.9.0.0/16"}, errHave: "task_pool is 10.200.0.0/16"},
		{updated: &shoalpb.ClusterSpec{NodeSubnetBits: 26}, errHave: "--node-subnet-size 26"},
	} {
		err := CheckPoolKept(stored, c.updated)
		if c.errHave == "" {
			if err != nil {
				t.Errorf("%v: %v", c.updated, err)
			}
			continue
		}
		if !errors.Is(err, ErrPoolFixed) || !strings.Contains(err.Error(), c.errHave) {
			t.Errorf("%v: err %v, want ErrPoolFixed saying %q", c.updated, err, c.errHave)
		}
	}
}

// Hold and Release keep a free-list current as tasks come and go.
func TestAddressesHoldRelease(t *testing.T) {
	a, err := NewAddresses("10.200.3.0/29", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Hold("10.200.3.4/29") || a.Hold("10.200.3.4/29") || a.Hold("10.200.3.1/29") || a.Hold("10.9.0.2/29") || a.Free() != 4 {
		t.Fatalf("Hold: a free address once, never a reserved or foreign one; %d free", a.Free())
	}
	a.Release("10.200.3.7/29") // broadcast: ignored
	a.Release("10.200.3.5/29") // free: ignored
	if a.Free() != 4 {
		t.Fatalf("releasing reserved or free addresses changed the count: %d", a.Free())
	}
	got := takeAll(t, a)
	if want := "10.200.3.2/29 10.200.3.3/29 10.200.3.5/29 10.200.3.6/29"; strings.Join(got, " ") != want {
		t.Fatalf("took %v, want %s", got, want)
	}
	a.Release("10.200.3.3/29")
	if addr, ok := a.Take(); !ok || addr != "10.200.3.3/29" {
		t.Fatalf("after a release Take = %q %v, want the released address", addr, ok)
	}
}
