package allocator

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	shoalpb "shoal/proto"
)

// wantErr checks that err wraps sentinel (when not nil) and says every part.
func wantErr(t *testing.T, what string, err, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one saying %q", what, parts)
		return
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("%s: %v, want it to wrap %v", what, err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %q does not say %q", what, err, p)
		}
	}
}

func TestPoolSlice(t *testing.T) {
	defaults := Pool{Prefix: netip.MustParsePrefix(DefaultTaskPool), SubnetBits: DefaultNodeSubnetBits}
	wide := Pool{Prefix: netip.MustParsePrefix("10.200.0.0/16"), SubnetBits: 20}
	for _, c := range []struct {
		name          string
		pool          Pool
		network, node string
		want          string
		errParts      []string
	}{
		{name: "first node", pool: defaults, network: "10.64.0.0/16", node: "10.200.0.0/24", want: "10.64.0.0/24"},
		{name: "node 5", pool: defaults, network: "10.64.0.0/16", node: "10.200.5.0/24", want: "10.64.5.0/24"},
		{name: "last node", pool: defaults, network: "10.64.0.0/16", node: "10.200.255.0/24", want: "10.64.255.0/24"},
		{name: "unmasked network", pool: defaults, network: "10.64.1.2/16", node: "10.200.7.0/24", want: "10.64.7.0/24"},
		{name: "/20 network gives /28 slices", pool: defaults, network: "10.90.16.0/20", node: "10.200.3.0/24", want: "10.90.16.48/28"},
		{name: "/21 network gives /29 slices", pool: defaults, network: "10.90.8.0/21", node: "10.200.255.0/24", want: "10.90.15.248/29"},
		{name: "/20 node subnets", pool: wide, network: "10.64.0.0/16", node: "10.200.16.0/20", want: "10.64.16.0/20"},
		{name: "network too small", pool: defaults, network: "10.90.0.0/22", node: "10.200.1.0/24", errParts: []string{"10.90.0.0/22 is too small", "give a /21 or larger"}},
		{name: "node subnet not a CIDR", pool: defaults, network: "10.64.0.0/16", node: "garbage", errParts: []string{`node subnet "garbage"`}},
		{name: "node subnet outside the pool", pool: defaults, network: "10.64.0.0/16", node: "10.201.0.0/24", errParts: []string{"10.201.0.0/24 is not a /24 of task pool 10.200.0.0/16"}},
		{name: "node subnet of the wrong length", pool: defaults, network: "10.64.0.0/16", node: "10.200.0.0/25", errParts: []string{"is not a /24"}},
	} {
		got, err := c.pool.Slice(netip.MustParsePrefix(c.network), c.node)
		if c.errParts != nil {
			wantErr(t, c.name, err, nil, c.errParts...)
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s: Slice(%s, %s) = %v %v, want %s", c.name, c.network, c.node, got, err, c.want)
		}
	}
}

// Slices of one network on different nodes never overlap, and each lies in
// its network.
func TestPoolSlicesAreDisjoint(t *testing.T) {
	pool := Pool{Prefix: netip.MustParsePrefix("10.200.0.0/16"), SubnetBits: 24}
	network := netip.MustParsePrefix("10.90.0.0/20")
	seen := map[netip.Prefix]bool{}
	for i := range pool.subnets() {
		s, err := pool.Slice(network, pool.subnet(i).String())
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] || !network.Contains(s.Addr()) || s.Bits() != 28 {
			t.Fatalf("node %d: slice %s repeats or is not a /28 of %s", i, s, network)
		}
		seen[s] = true
	}
}

func TestCheckNetworkSubnet(t *testing.T) {
	others := []*shoalpb.Network{
		{Spec: &shoalpb.NetworkSpec{Name: "front"}, Subnet: "10.64.0.0/16"},
		{Spec: &shoalpb.NetworkSpec{Name: "broken"}, Subnet: "not a cidr"}, // ignored
	}
	for _, c := range []struct {
		name     string
		spec     *shoalpb.ClusterSpec
		cidr     string
		want     string
		sentinel error
		errParts []string
	}{
		{name: "free /16", cidr: "10.90.0.0/16", want: "10.90.0.0/16"},
		{name: "largest that fits", cidr: "10.90.0.0/21", want: "10.90.0.0/21"},
		{name: "a /8 elsewhere", cidr: "11.0.0.0/8", want: "11.0.0.0/8"},
		{name: "/20 node subnets allow a /25", spec: &shoalpb.ClusterSpec{TaskPool: "10.200.0.0/16", NodeSubnetBits: 20}, cidr: "10.90.0.0/25", want: "10.90.0.0/25"},
		{name: "not a CIDR", cidr: "10.90.0.0", errParts: []string{`--subnet "10.90.0.0" is not an IPv4 CIDR`}},
		{name: "IPv6", cidr: "fd00::/64", errParts: []string{"--subnet", "not an IPv4 CIDR"}},
		{name: "host bits", cidr: "10.90.0.1/16", errParts: []string{"--subnet 10.90.0.1/16 has host bits set", "give 10.90.0.0/16"}},
		{name: "too small", cidr: "10.90.0.0/22", errParts: []string{"--subnet 10.90.0.0/22 is too small", "8 bits longer", "give a /21 or larger"}},
		{name: "the task pool", cidr: "10.200.0.0/16", errParts: []string{"overlaps the task pool 10.200.0.0/16"}},
		{name: "around the task pool", cidr: "10.0.0.0/8", errParts: []string{"overlaps the task pool"}},
		{name: "the VIP pool", cidr: "10.201.0.0/20", errParts: []string{"overlaps the VIP pool 10.201.0.0/16"}},
		{name: "another network", cidr: "10.64.0.0/16", errParts: []string{"overlaps network front (10.64.0.0/16)"}},
		{name: "inside another network", cidr: "10.64.128.0/20", errParts: []string{"overlaps network front"}},
		{name: "broken task pool", spec: &shoalpb.ClusterSpec{TaskPool: "nonsense"}, cidr: "10.90.0.0/16", sentinel: ErrInvalidPool, errParts: []string{"task_pool"}},
	} {
		got, err := CheckNetworkSubnet(c.spec, c.cidr, others)
		if c.errParts != nil {
			wantErr(t, c.name, err, c.sentinel, c.errParts...)
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s: CheckNetworkSubnet(%s) = %v %v, want %s", c.name, c.cidr, got, err, c.want)
		}
	}
}

func nets(subnets ...string) []*shoalpb.Network {
	out := make([]*shoalpb.Network, len(subnets))
	for i, s := range subnets {
		out[i] = &shoalpb.Network{Spec: &shoalpb.NetworkSpec{Name: "n" + s}, Subnet: s}
	}
	return out
}

func TestFreeNetworkSubnet(t *testing.T) {
	for _, c := range []struct {
		name     string
		spec     *shoalpb.ClusterSpec
		others   []*shoalpb.Network
		want     string
		errParts []string
	}{
		{name: "first", want: "10.64.0.0/16"},
		{name: "lowest free", others: nets("10.64.0.0/16", "10.66.0.0/16"), want: "10.65.0.0/16"},
		{name: "a small network blocks its /16", others: nets("10.64.0.0/16", "10.65.16.0/20"), want: "10.66.0.0/16"},
		{name: "a large network blocks every /16 in it", others: nets("10.64.0.0/12"), want: "10.80.0.0/16"},
		{name: "unparsable subnets are ignored", others: nets("garbage"), want: "10.64.0.0/16"},
		{name: "networks outside the pool do not matter", others: nets("10.90.0.0/16"), want: "10.64.0.0/16"},
		{name: "as long as a /20 task pool", spec: &shoalpb.ClusterSpec{TaskPool: "10.200.0.0/20", NodeSubnetBits: 24}, others: nets("10.64.0.0/20"), want: "10.64.16.0/20"},
		{name: "own network pool", spec: &shoalpb.ClusterSpec{NetworkPool: "172.20.0.0/14"}, others: nets("172.20.0.0/16"), want: "172.21.0.0/16"},
		{name: "full", spec: &shoalpb.ClusterSpec{NetworkPool: "10.64.0.0/15"}, others: nets("10.64.0.0/16", "10.65.0.0/16"),
			errParts: []string{"network pool 10.64.0.0/15 is full (2 networks of /16)", "--subnet"}},
		{name: "pool smaller than one network", spec: &shoalpb.ClusterSpec{NetworkPool: "10.64.0.0/17"},
			errParts: []string{"network_pool 10.64.0.0/17 is smaller than one network", "--subnet"}},
	} {
		got, err := FreeNetworkSubnet(c.spec, c.others)
		if c.errParts != nil {
			wantErr(t, c.name, err, ErrNoNetworkSubnet, c.errParts...)
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s: FreeNetworkSubnet = %v %v, want %s", c.name, got, err, c.want)
		}
	}
	// A broken pool is the cluster spec's fault, not a full pool.
	_, err := FreeNetworkSubnet(&shoalpb.ClusterSpec{NetworkPool: "10.200.0.0/12"}, nil)
	wantErr(t, "network pool overlapping the task pool", err, ErrInvalidPool, "overlaps task_pool")
}

func TestNetworkPoolOf(t *testing.T) {
	for _, c := range []struct {
		spec     *shoalpb.ClusterSpec
		want     string
		errParts []string
	}{
		{spec: nil, want: DefaultNetworkPool},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "172.20.3.4/14"}, want: "172.20.0.0/14"},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "10.128.0.0/9"}, errParts: []string{"network_pool 10.128.0.0/9 overlaps task_pool 10.200.0.0/16"}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "10.200.128.0/20"}, errParts: []string{"overlaps task_pool"}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "10.201.0.0/20"}, errParts: []string{"network_pool 10.201.0.0/20 overlaps vip_pool 10.201.0.0/16"}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "10.64.0.0/10", TaskPool: "10.70.0.0/16"}, errParts: []string{"overlaps task_pool 10.70.0.0/16"}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "10.64.0.0/10", VipPool: "10.100.0.0/24"}, errParts: []string{"overlaps vip_pool 10.100.0.0/24"}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "fd00::/48"}, errParts: []string{`network_pool "fd00::/48" is not an IPv4 CIDR`}},
		{spec: &shoalpb.ClusterSpec{NetworkPool: "nonsense"}, errParts: []string{"not an IPv4 CIDR", DefaultNetworkPool}},
	} {
		got, err := NetworkPoolOf(c.spec)
		if c.errParts != nil {
			wantErr(t, c.spec.GetNetworkPool(), err, ErrInvalidPool, c.errParts...)
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("NetworkPoolOf(%v) = %v %v, want %s", c.spec, got, err, c.want)
		}
	}
}

func TestDefaultNetworkAndTaskNetworkIDs(t *testing.T) {
	d := DefaultNetwork(&shoalpb.ClusterSpec{TaskPool: "10.70.0.0/16"})
	if d.GetId() != DefaultNetworkID || d.GetSpec().GetName() != DefaultNetworkName || d.GetSubnet() != "10.70.0.0/16" {
		t.Errorf("DefaultNetwork = %v", d)
	}
	if d := DefaultNetwork(nil); d.GetSubnet() != DefaultTaskPool {
		t.Errorf("DefaultNetwork(nil) subnet %s, want %s", d.GetSubnet(), DefaultTaskPool)
	}
	if ids := TaskNetworkIDs(&shoalpb.TaskSpec{}); len(ids) != 1 || ids[0] != DefaultNetworkID {
		t.Errorf("no networks: %v, want the default network", ids)
	}
	spec := &shoalpb.TaskSpec{Networks: []*shoalpb.NetworkAttachmentConfig{{Target: "b"}, {Target: "a"}}}
	if ids := TaskNetworkIDs(spec); strings.Join(ids, ",") != "b,a" {
		t.Errorf("TaskNetworkIDs = %v, want b,a in order", ids)
	}
}
