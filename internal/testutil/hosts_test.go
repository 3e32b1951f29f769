package testutil

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// Two hosts reach each other and the test's namespace over the bridge, and
// cleanup leaves no namespace, link or rule behind.
func TestHostsReachEachOtherAndCleanUp(t *testing.T) {
	h := newHostNet(t)
	t.Cleanup(func() { _ = h.cleanup() })
	nsA, ipA := h.newHost(t)
	nsB, ipB := h.newHost(t)
	if ipA == ipB || !strings.HasPrefix(ipA, h.prefix) {
		t.Fatalf("host addresses %s and %s, want two distinct ones in %s0/24", ipA, ipB, h.prefix)
	}
	a := &Node{netns: nsA}
	if out, err := a.HostCommand("ping", "-c", "1", "-W", "5", ipB).CombinedOutput(); err != nil {
		t.Fatalf("host A cannot ping host B (%s): %v: %s", ipB, err, out)
	}
	if out, err := exec.Command("ping", "-c", "1", "-W", "5", ipA).CombinedOutput(); err != nil {
		t.Fatalf("the test cannot ping host A (%s): %v: %s", ipA, err, out)
	}
	if err := h.cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	for _, ns := range []string{nsA, nsB} {
		if err := exec.Command("ip", "netns", "pids", ns).Run(); err == nil {
			t.Errorf("namespace %s still exists after cleanup", ns)
		}
	}
	if _, err := net.InterfaceByName(h.bridge); err == nil {
		t.Errorf("bridge %s still exists after cleanup", h.bridge)
	}
	for _, table := range []string{"filter", "nat"} {
		if out, _ := exec.Command("iptables", "-t", table, "-S").Output(); strings.Contains(string(out), h.bridge) {
			t.Errorf("the %s table still holds a rule for %s:\n%s", table, h.bridge, out)
		}
	}
}
