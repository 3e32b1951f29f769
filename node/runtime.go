package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"

	"shoal/manager/allocator"
	"shoal/manager/ca"
	"shoal/manager/state"
	shoalpb "shoal/proto"
	"shoal/worker/exec"
	"shoal/worker/images"
	"shoal/worker/network"
	"shoal/worker/runtime"
	"shoal/worker/runtime/containerd"
	"shoal/worker/runtime/process"
	"shoal/worker/volumes"
)

// taskRuntime is what runs the node's tasks: the runtime and, for
// containerd, the image store, the task network and the named volumes. It
// lives as long as the daemon, across role changes, so that a promotion does
// not restart containerd.
type taskRuntime struct {
	rt      runtime.Runtime
	images  images.Store     // nil for the process runtime
	network *network.Network // nil for the process runtime
	svcnet  *serviceNet      // nil for the process runtime
	volumes *volumes.Store
	close   func()
}

// openRuntime starts the runtime the node's identity names. The containerd
// runtime comes up in the background (see startingRuntime); if it cannot,
// fail is called with why.
func (n *Node) openRuntime(ctx context.Context, fail func(error)) (*taskRuntime, error) {
	id := n.identity()
	vols, err := volumes.NewStore(n.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if id.Runtime != "containerd" {
		rt, err := process.New(process.Config{Dir: filepath.Join(n.cfg.DataDir, exec.TasksDir), Logger: n.log})
		if err != nil {
			return nil, err
		}
		return &taskRuntime{rt: rt, volumes: vols, close: func() {}}, nil
	}
	netw, err := network.New(network.Config{DataDir: n.cfg.DataDir, ClusterDNS: true, Logger: n.log})
	if err != nil {
		return nil, fmt.Errorf("task network: %w", err)
	}
	svcnet, err := openServiceNet(ctx, netw, n.cfg.DNSUpstreams, n.log)
	if err != nil {
		return nil, err
	}
	// Leftovers of a crash: namespaces and rules of tasks the executor
	// holds no record of (it adopts or removes all the others).
	if err := netw.Prune(ctx, recordedTasks(n.cfg.DataDir)); err != nil {
		n.log.Warn("pruning leftover task networks", "err", err)
	}
	if n.cfg.ContainerdAddress == "" {
		if err := containerd.CheckInstalled(); err != nil {
			return nil, err
		}
	}
	starting := &startingRuntime{dataDir: n.cfg.DataDir, ready: make(chan struct{})}
	go func() {
		defer close(starting.ready)
		starting.rt, starting.err = containerd.New(ctx, containerd.Config{
			DataDir: n.cfg.DataDir,
			Address: n.cfg.ContainerdAddress,
			Network: taskNetwork{Network: netw, s: svcnet},
			Images:  images.Source(n.dialManager),
			Volume:  vols.Ensure,
			Log:     n.log,
		})
		if starting.err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("containerd runtime: %w", starting.err))
		}
	}()
	return &taskRuntime{rt: starting, images: starting, network: netw, svcnet: svcnet, volumes: vols, close: func() {
		svcnet.close()
		<-starting.ready
		if starting.rt == nil {
			return
		}
		if err := starting.rt.Close(); err != nil {
			n.log.Warn("stopping containerd", "err", err)
		}
	}}, nil
}

// recordedTasks are the IDs of the tasks the executor keeps a record of.
func recordedTasks(dataDir string) map[string]bool {
	keep := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(dataDir, exec.TasksDir))
	for _, e := range entries {
		if e.IsDir() {
			keep[e.Name()] = true
		}
	}
	return keep
}

// purge removes every container, snapshot, mount, task namespace and rule
// of the node in dataDir; the daemon must not run. `leave` and `shoal
// cleanup` use it.
func purge(ctx context.Context, dataDir string) error {
	var errs []error
	if _, err := os.Stat(filepath.Join(dataDir, "containerd")); err == nil {
		errs = append(errs, containerd.Purge(ctx, dataDir))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "network")); err == nil {
		netw, err := network.New(network.Config{DataDir: dataDir})
		if err == nil {
			err = netw.Destroy(ctx)
			errs = append(errs, destroyVIPs(netw))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Purge is purge for `shoal cleanup`.
func Purge(ctx context.Context, dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if conn, err := net.DialTimeout("unix", filepath.Join(abs, socketFile), time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("a shoal daemon is running on %s; stop it first", abs)
	}
	return purge(ctx, abs)
}

// onNetwork applies what the dispatcher says of the task networks: the
// node makes its slice of every network (docs/networking.md: a node's
// slices follow from its subnet), routes to every other node's slices, and
// serves DNS on each slice's gateway.
func (n *Node) onNetwork(tr *taskRuntime) func(*shoalpb.SessionMessage) {
	if tr.network == nil {
		return nil
	}
	return func(msg *shoalpb.SessionMessage) {
		subnet := msg.GetNode().GetSubnet()
		if subnet == "" {
			return
		}
		defs, peers, err := networkPlan(subnet, msg)
		if err != nil {
			n.log.Warn("setting up the task networks", "subnet", subnet, "err", err)
		}
		if len(defs) == 0 {
			return
		}
		if err := tr.network.SetNetworks(defs); err != nil {
			n.log.Warn("setting up the task networks", "subnet", subnet, "err", err)
			return
		}
		if err := tr.network.SetPeers(peers); err != nil {
			n.log.Warn("routing to other nodes' tasks", "err", err)
		}
		tr.svcnet.setNetworks(defs, tr.network)
	}
}

// networkPlan is this node's slice of every network of msg and every other
// node's slices, which are routed through that node. A network that cannot
// be sliced (the control API refuses to make one) is left out and named in
// the error; the others are still returned.
func networkPlan(subnet string, msg *shoalpb.SessionMessage) ([]network.Def, []*shoalpb.NodeSubnet, error) {
	own, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, nil, fmt.Errorf("node subnet %q: %w", subnet, err)
	}
	poolCIDR := msg.GetTaskPool()
	if poolCIDR == "" {
		poolCIDR = allocator.DefaultTaskPool
	}
	pool, err := allocator.ParsePool(poolCIDR, uint32(own.Bits()), allocator.FieldNames)
	if err != nil {
		return nil, nil, err
	}
	nets := msg.GetNetworks()
	if len(nets) == 0 { // a leader that sends none: the default network only
		nets = []*shoalpb.Network{{Id: allocator.DefaultNetworkID, Subnet: pool.String()}}
	}
	var defs []network.Def
	var peers []*shoalpb.NodeSubnet
	var errs []error
	for _, nw := range nets {
		whole, err := netip.ParsePrefix(nw.GetSubnet())
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: subnet %q: %w", nw.GetId(), nw.GetSubnet(), err))
			continue
		}
		slice, err := pool.Slice(whole, subnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", nw.GetId(), err))
			continue
		}
		defs = append(defs, network.Def{ID: nw.GetId(), Subnet: whole, Slice: slice})
		for _, p := range msg.GetPeers() {
			ps, err := pool.Slice(whole, p.GetSubnet())
			if err != nil {
				continue // a peer's subnet of another size: not routable
			}
			peers = append(peers, &shoalpb.NodeSubnet{NodeId: p.GetNodeId(), Subnet: ps.String(), Ip: p.GetIp()})
		}
	}
	return defs, peers, errors.Join(errs...)
}

// onEndpoints is the agent's OnEndpoints: nil for a node without service
// networking (the process runtime).
func (tr *taskRuntime) onEndpoints() func(*shoalpb.EndpointsMessage) {
	if tr.svcnet == nil {
		return nil
	}
	return tr.svcnet.endpoints.Apply
}

// deregisterDelay is the executor's DeregisterDelay: nil without service
// networking.
func (tr *taskRuntime) deregisterDelay() func() time.Duration {
	if tr.svcnet == nil {
		return nil
	}
	return tr.svcnet.deregisterDelay
}

// dialManager connects to the first manager that answers, for the image
// source.
func (n *Node) dialManager(ctx context.Context) (*grpc.ClientConn, error) {
	var errs []error
	for _, addr := range n.managerAddrs() {
		conn, err := n.dialNode(ctx, addr, ca.RoleManager)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no manager is known yet")
	}
	return nil, errors.Join(errs...)
}

// dialNode connects to another node's cluster port and waits until the
// connection is up, so that an unreachable node fails here.
func (n *Node) dialNode(ctx context.Context, addr string, want ...ca.Role) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(n.creds.ClientTLS(want...))))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return conn, nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, fmt.Errorf("not reachable: %w", ctx.Err())
		}
	}
}

// imagePeers lists the ready nodes with their cluster addresses, for a
// manager's Images server.
func imagePeers(store *state.Store) func() []images.Peer {
	return func() []images.Peer {
		var peers []images.Peer
		store.View(func(tx state.ReadTx) {
			for _, nd := range tx.Nodes() {
				if nd.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_READY && nd.GetStatus().GetAddr() != "" {
					peers = append(peers, images.Peer{NodeID: nd.GetId(), Addr: nd.GetStatus().GetAddr()})
				}
			}
		})
		return peers
	}
}
