package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	shoalpb "shoal/proto"
)

// networkWait bounds how long Attach waits for SetNetworks to make a
// network the task is on: the manager sends a node its slice of a new
// network along with, not always before, the first task on it.
var networkWait = 10 * time.Second

// linkPlan is how one interface of a task is made.
type linkPlan struct {
	bridge string
	addr   *net.IPNet
	gw     net.IP
	// route is the network's whole subnet, routed via gw, for every
	// interface but eth0, which has the default route instead.
	route *net.IPNet
}

// taskNetworks returns t's networks, the primary first: Task.Networks, or
// the default network with Task.Address for a task from before networks.
func taskNetworks(t *shoalpb.Task) ([]*shoalpb.TaskNetwork, error) {
	tns := t.GetNetworks()
	if len(tns) == 0 {
		return []*shoalpb.TaskNetwork{{NetworkId: DefaultID, Address: t.GetAddress()}}, nil
	}
	seen := map[string]bool{}
	for i, tn := range tns {
		if tn.GetNetworkId() == "" {
			return nil, fmt.Errorf("network: task %s: networks[%d] has no network ID", t.GetId(), i)
		}
		if seen[tn.GetNetworkId()] {
			return nil, fmt.Errorf("network: task %s is on network %s twice; list each network once", t.GetId(), tn.GetNetworkId())
		}
		seen[tn.GetNetworkId()] = true
	}
	return tns, nil
}

// waitNetworksLocked waits, with mu held, until every network of tns is
// made here and no Attach or Detach of task id runs, and returns copies of
// the networks' records in the order of tns. It fails with
// ErrUnknownNetwork once ctx ends or networkWait has passed.
func (n *Network) waitNetworksLocked(ctx context.Context, id string, tns []*shoalpb.TaskNetwork) ([]netRecord, error) {
	deadline := time.Now().Add(networkWait)
	wake := func() {
		n.mu.Lock()
		n.netsChanged.Broadcast()
		n.mu.Unlock()
	}
	timer := time.AfterFunc(networkWait, wake)
	defer timer.Stop()
	defer context.AfterFunc(ctx, wake)()
	for {
		n.waitTaskLocked(id)
		var nets []netRecord
		missing := ""
		for _, tn := range tns {
			r := n.netLocked(tn.GetNetworkId())
			if r == nil {
				missing = tn.GetNetworkId()
				break
			}
			nets = append(nets, *r)
		}
		if missing == "" {
			return nets, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: task %s: network %q is not set up on this node: %w", ErrUnknownNetwork, id, missing, err)
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: task %s: network %q was not set up on this node within %s; the manager must give the node its slice of the network (SetNetworks) first", ErrUnknownNetwork, id, missing, networkWait)
		}
		n.netsChanged.Wait()
	}
}

// taskAddress parses tn's address and checks it lies inside the node's
// slice of the network, with the slice's prefix length, and is neither
// the network, the gateway nor the broadcast address.
func taskAddress(taskID string, tn *shoalpb.TaskNetwork, slice *net.IPNet) (*net.IPNet, error) {
	a, netID := tn.GetAddress(), tn.GetNetworkId()
	if a == "" {
		return nil, fmt.Errorf("%w: task %s has no address on network %s; the allocator must give it one in %s", ErrBadAddress, taskID, netID, slice)
	}
	ip, ipn, err := net.ParseCIDR(a)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("%w: task %s address %q on network %s is not an IPv4 CIDR address like 10.200.3.5/24", ErrBadAddress, taskID, a, netID)
	}
	ip = ip.To4()
	ones, _ := ipn.Mask.Size()
	sones, _ := slice.Mask.Size()
	if !slice.Contains(ip) || ones != sones {
		return nil, fmt.Errorf("%w: task %s address %s is outside this node's slice %s of network %s", ErrBadAddress, taskID, a, slice, netID)
	}
	if ip.Equal(slice.IP) || ip.Equal(gatewayOf(slice)) || ip.Equal(broadcastOf(slice)) {
		return nil, fmt.Errorf("%w: task %s address %s is the network, gateway or broadcast address of %s (network %s)", ErrBadAddress, taskID, a, slice, netID)
	}
	return &net.IPNet{IP: ip, Mask: slice.Mask}, nil
}

// extraVethName is the host side's name of a task's interface on a network
// other than its primary one: 15 characters at most, unique per node, task
// and network.
func (n *Network) extraVethName(taskID, netID string) string {
	sum := sha256.Sum256([]byte(n.nodeTag + "/" + taskID + "/" + netID))
	return vethPrefix + hex.EncodeToString(sum[:6])
}
