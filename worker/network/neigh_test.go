package network

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// A task given the address of a removed one is reachable from its node at
// once: the node forgets the removed task's MAC instead of sending to it
// until the neighbour entry expires. (Another task keeps the bridge up: a
// bridge that loses its last port loses its neighbour entries anyway.)
func TestReusedAddressIsReachableAtOnce(t *testing.T) {
	n := newTestNetwork(t, "10.231.50.0/24")
	const ip = "10.231.50.5"
	attach(t, n, task("othertask", "10.231.50.9/24"))
	old := attach(t, n, task("oldtask", ip+"/24"))
	listenIn(t, old.NetNSPath, "0.0.0.0:7000")
	if _, err := dialFrom(t, "", ip+":7000"); err != nil {
		t.Fatalf("node → task: %v", err)
	}
	oldMAC := neighbourMAC(t, n, ip)
	if oldMAC == "" {
		t.Fatalf("the node reached %s but holds no neighbour entry for it", ip)
	}
	if err := n.Detach(t.Context(), "oldtask"); err != nil {
		t.Fatal(err)
	}
	reused := attach(t, n, task("newtask", ip+"/24"))
	if mac := neighbourMAC(t, n, ip); mac == oldMAC {
		t.Fatalf("after a new task took %s the node still sends to the removed task's MAC %s", ip, mac)
	}
	listenIn(t, reused.NetNSPath, "0.0.0.0:7000")
	if _, err := dialFrom(t, "", ip+":7000"); err != nil {
		t.Fatalf("node → a new task on the removed one's address: %v", err)
	}
}

// neighbourMAC is the MAC the node holds for ip on n's bridge, "" if none.
func neighbourMAC(t *testing.T, n *Network, ip string) string {
	t.Helper()
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := netlink.NeighList(br.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, nb := range neighs {
		if nb.IP.Equal(net.ParseIP(ip)) && nb.HardwareAddr != nil {
			return nb.HardwareAddr.String()
		}
	}
	return ""
}
