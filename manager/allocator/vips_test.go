package allocator

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	shoalpb "shoal/proto"
)

func TestVIPPoolOf(t *testing.T) {
	for _, c := range []struct {
		spec    *shoalpb.ClusterSpec
		want    string
		errHave []string
	}{
		{spec: nil, want: DefaultVIPPool},
		{spec: &shoalpb.ClusterSpec{VipPool: "10.9.3.7/24"}, want: "10.9.3.0/24"},
		{spec: &shoalpb.ClusterSpec{VipPool: "10.200.128.0/20"}, errHave: []string{"vip_pool 10.200.128.0/20", "overlaps task_pool 10.200.0.0/16"}},
		{spec: &shoalpb.ClusterSpec{VipPool: "10.9.0.0/31"}, errHave: []string{"vip_pool", "at most /30"}},
		{spec: &shoalpb.ClusterSpec{VipPool: "fd00::/64"}, errHave: []string{"vip_pool", "IPv4"}},
	} {
		p, err := VIPPoolOf(c.spec)
		if c.want != "" {
			if err != nil || p.String() != c.want {
				t.Errorf("VIPPoolOf(%v) = %v %v, want %s", c.spec, p, err, c.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidPool) {
			t.Errorf("VIPPoolOf(%v) err = %v, want ErrInvalidPool", c.spec, err)
			continue
		}
		for _, s := range c.errHave {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	}
}

func TestFreeVIP(t *testing.T) {
	pool := netip.MustParsePrefix("10.9.0.0/29") // .1 to .6 usable
	used := map[netip.Addr]bool{netip.MustParseAddr("10.9.0.1"): true, netip.MustParseAddr("10.9.0.3"): true}
	for skip, want := range []string{"10.9.0.2", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.6"} {
		if got, err := FreeVIP(pool, used, skip); err != nil || got.String() != want {
			t.Errorf("FreeVIP(skip %d) = %v %v, want %s", skip, got, err, want)
		}
	}
	for _, a := range []string{"10.9.0.2", "10.9.0.4", "10.9.0.5", "10.9.0.6"} {
		used[netip.MustParseAddr(a)] = true
	}
	if _, err := FreeVIP(pool, used, 0); !errors.Is(err, ErrNoVIP) || !strings.Contains(err.Error(), "--endpoint-mode dnsrr") {
		t.Errorf("full pool: %v, want ErrNoVIP naming the way out", err)
	}
}
