package dispatcher

import (
	"net/netip"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"shoal/manager/allocator"
	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// DefaultDNSTTLMs is the DNS TTL when the cluster spec sets none.
const DefaultDNSTTLMs = 1000

// endpointTable is the leader's view of what every node's DNS, VIPs and
// routing mesh serve: the services and the tasks that may receive traffic.
// The leader loop feeds it store events; every change is queued at once
// for every Endpoints stream, so a task that stops being ready, is to be
// stopped or whose node goes down leaves all nodes in one push.
//
// A task is an endpoint while it is desired RUNNING, is RUNNING and ready,
// has an address, and its node is not DOWN. (A node in UNKNOWN, as all are
// just after a leader change, keeps its endpoints: dropping them would
// blank every name until the new leader has judged the nodes.)
type endpointTable struct {
	mu       sync.Mutex
	ttlMs    int64
	services map[string]*shoalpb.ServiceEndpoints // by service ID
	// cands are the tasks that qualify but for their node's state, by
	// task ID; byNode indexes them so a node going down or up costs its
	// own tasks only.
	cands  map[string]*shoalpb.EndpointTask
	byNode map[string]map[string]bool
	down   map[string]bool // nodes marked DOWN
	queues map[*endpointQueue]bool
}

// endpointQueue holds the changes waiting for one Endpoints stream.
type endpointQueue struct {
	notify chan struct{}

	mu             sync.Mutex
	complete       bool
	services       map[string]*shoalpb.ServiceEndpoints
	removeServices map[string]bool
	tasks          map[string]*shoalpb.EndpointTask
	removeTasks    map[string]bool
}

func newEndpointQueue() *endpointQueue {
	q := &endpointQueue{notify: make(chan struct{}, 1), complete: true}
	q.clear()
	return q
}

func (q *endpointQueue) clear() {
	q.services, q.removeServices = map[string]*shoalpb.ServiceEndpoints{}, map[string]bool{}
	q.tasks, q.removeTasks = map[string]*shoalpb.EndpointTask{}, map[string]bool{}
}

func (q *endpointQueue) poke() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// reset rebuilds the table from the store and makes every stream's next
// message the complete set.
func (e *endpointTable) reset(tx state.ReadTx) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ttlMs = dnsTTLMs(tx.Cluster().GetSpec())
	e.services = map[string]*shoalpb.ServiceEndpoints{}
	e.cands = map[string]*shoalpb.EndpointTask{}
	e.byNode = map[string]map[string]bool{}
	e.down = map[string]bool{}
	for _, n := range tx.Nodes() {
		if isDown(n) {
			e.down[n.GetId()] = true
		}
	}
	for _, svc := range tx.Services() {
		e.services[svc.GetId()] = serviceEndpoints(svc)
	}
	for _, svc := range tx.Services() {
		for _, t := range tx.TasksByService(svc.GetId()) {
			if et := endpointTask(t); et != nil {
				e.addCand(et)
			}
		}
	}
	for q := range e.queues {
		q.mu.Lock()
		q.complete = true
		q.clear()
		q.mu.Unlock()
		q.poke()
	}
}

// onEvent applies one store event.
func (e *endpointTable) onEvent(ev state.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.services == nil {
		return // not reset yet: the reset reads the store
	}
	switch obj := ev.Object.(type) {
	case *shoalpb.Task:
		var et *shoalpb.EndpointTask
		if ev.Kind != state.EventDelete {
			et = endpointTask(obj)
		}
		e.setTask(obj.GetId(), et)
	case *shoalpb.Service:
		id := obj.GetId()
		if ev.Kind == state.EventDelete {
			delete(e.services, id)
			e.broadcast(func(q *endpointQueue) {
				delete(q.services, id)
				q.removeServices[id] = true
			})
			for tid, et := range e.cands {
				if et.GetServiceId() == id {
					e.setTask(tid, nil)
				}
			}
			return
		}
		se := serviceEndpoints(obj)
		if old := e.services[id]; old != nil && proto.Equal(old, se) {
			return
		}
		e.services[id] = se
		e.broadcast(func(q *endpointQueue) {
			delete(q.removeServices, id)
			q.services[id] = se
		})
	case *shoalpb.Node:
		id := obj.GetId()
		down := ev.Kind == state.EventDelete || isDown(obj)
		if down == e.down[id] {
			return
		}
		if down {
			e.down[id] = true
		} else {
			delete(e.down, id)
		}
		for tid := range e.byNode[id] {
			et := e.cands[tid]
			e.broadcast(func(q *endpointQueue) { queueTask(q, tid, et, down) })
		}
	case *shoalpb.Cluster:
		if ttl := dnsTTLMs(obj.GetSpec()); ttl != e.ttlMs {
			e.ttlMs = ttl
			e.broadcast(func(*endpointQueue) {})
		}
	}
}

// setTask records whether task id is a candidate (et != nil) and queues
// the change of its endpoint state, if any. e.mu must be held.
func (e *endpointTable) setTask(id string, et *shoalpb.EndpointTask) {
	old := e.cands[id]
	if old == nil && et == nil || old != nil && et != nil && proto.Equal(old, et) {
		return
	}
	if old != nil {
		delete(e.cands, id)
		if m := e.byNode[old.GetNodeId()]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(e.byNode, old.GetNodeId())
			}
		}
	}
	if et != nil {
		e.addCand(et)
	}
	wasEndpoint := old != nil && !e.down[old.GetNodeId()]
	isEndpoint := et != nil && !e.down[et.GetNodeId()]
	if !wasEndpoint && !isEndpoint {
		return
	}
	e.broadcast(func(q *endpointQueue) { queueTask(q, id, et, !isEndpoint) })
}

func (e *endpointTable) addCand(et *shoalpb.EndpointTask) {
	e.cands[et.GetTaskId()] = et
	m := e.byNode[et.GetNodeId()]
	if m == nil {
		m = map[string]bool{}
		e.byNode[et.GetNodeId()] = m
	}
	m[et.GetTaskId()] = true
}

func queueTask(q *endpointQueue, id string, et *shoalpb.EndpointTask, remove bool) {
	if remove {
		delete(q.tasks, id)
		q.removeTasks[id] = true
		return
	}
	delete(q.removeTasks, id)
	q.tasks[id] = et
}

// broadcast applies fn to every stream's queue and wakes it. e.mu must be
// held: that orders every queued change after the snapshot a stream took.
func (e *endpointTable) broadcast(fn func(q *endpointQueue)) {
	for q := range e.queues {
		q.mu.Lock()
		if !q.complete {
			fn(q)
		}
		q.mu.Unlock()
		q.poke()
	}
}

func (e *endpointTable) subscribe() *endpointQueue {
	q := newEndpointQueue()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queues == nil {
		e.queues = map[*endpointQueue]bool{}
	}
	e.queues[q] = true
	return q
}

func (e *endpointTable) unsubscribe(q *endpointQueue) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.queues, q)
}

// next drains q into one message: the complete set when q asks for it,
// else its changes; nil when there is nothing to send.
func (e *endpointTable) next(q *endpointQueue, lastTTL int64) *shoalpb.EndpointsMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	msg := &shoalpb.EndpointsMessage{Complete: q.complete, DnsTtlMs: e.ttlMs}
	if q.complete {
		for _, se := range e.services {
			msg.Services = append(msg.Services, se)
		}
		for id, et := range e.cands {
			if !e.down[et.GetNodeId()] {
				msg.Tasks = append(msg.Tasks, e.cands[id])
			}
		}
	} else {
		for _, se := range q.services {
			msg.Services = append(msg.Services, se)
		}
		for id := range q.removeServices {
			msg.RemoveServices = append(msg.RemoveServices, id)
		}
		for _, et := range q.tasks {
			msg.Tasks = append(msg.Tasks, et)
		}
		for id := range q.removeTasks {
			msg.RemoveTasks = append(msg.RemoveTasks, id)
		}
	}
	q.complete = false
	q.clear()
	if !msg.Complete && len(msg.Services)+len(msg.RemoveServices)+len(msg.Tasks)+len(msg.RemoveTasks) == 0 && msg.DnsTtlMs == lastTTL {
		return nil
	}
	return msg
}

// Endpoints streams the services and their ready tasks to the node: the
// complete set, then changes, while the session lasts.
func (d *Dispatcher) Endpoints(req *shoalpb.EndpointsRequest, stream grpc.ServerStreamingServer[shoalpb.EndpointsMessage]) error {
	sess, err := d.sessionFor(stream.Context(), req.GetSessionId())
	if err != nil {
		return err
	}
	q := d.endpoints.subscribe()
	defer d.endpoints.unsubscribe(q)
	var lastTTL int64
	for {
		if msg := d.endpoints.next(q, lastTTL); msg != nil {
			lastTTL = msg.DnsTtlMs
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-sess.closed:
			return status.Error(codes.Unavailable, "session closed by the dispatcher; reconnect")
		case <-q.notify:
		}
	}
}

// resetEndpoints rebuilds the endpoint table from the store.
func (d *Dispatcher) resetEndpoints() {
	d.cfg.Store.View(d.endpoints.reset)
}

// endpointTask is t as an endpoint, nil unless it qualifies (but for its
// node's state).
func endpointTask(t *shoalpb.Task) *shoalpb.EndpointTask {
	st := t.GetStatus()
	if t.GetDesiredState() != shoalpb.TaskState_TASK_STATE_RUNNING || st.GetState() != shoalpb.TaskState_TASK_STATE_RUNNING ||
		!st.GetReady() || t.GetAddress() == "" || t.GetNodeId() == "" {
		return nil
	}
	var nets []*shoalpb.TaskNetwork
	for _, n := range t.GetNetworks() {
		nets = append(nets, &shoalpb.TaskNetwork{NetworkId: n.GetNetworkId(), Address: bareAddr(n.GetAddress())})
	}
	if nets == nil { // placed before networks existed: on the default network
		nets = []*shoalpb.TaskNetwork{{NetworkId: allocator.DefaultNetworkID, Address: bareAddr(t.GetAddress())}}
	}
	return &shoalpb.EndpointTask{
		TaskId:    t.GetId(),
		ServiceId: t.GetServiceId(),
		Name:      servicespec.TaskName(t),
		Address:   bareAddr(t.GetAddress()),
		NodeId:    t.GetNodeId(),
		DrainMs:   t.GetSpec().GetContainer().GetStopGracePeriodMs(),
		Networks:  nets,
	}
}

// bareAddr is addr ("10.200.3.5/24") without its prefix length.
func bareAddr(addr string) string {
	if p, err := netip.ParsePrefix(addr); err == nil {
		return p.Addr().String()
	}
	return addr
}

func serviceEndpoints(svc *shoalpb.Service) *shoalpb.ServiceEndpoints {
	spec := svc.GetSpec()
	return &shoalpb.ServiceEndpoints{
		ServiceId: svc.GetId(),
		Name:      spec.GetName(),
		Stack:     spec.GetLabels()[servicespec.StackLabel],
		Mode:      spec.GetEndpoint().GetMode(),
		Vip:       svc.GetEndpoint().GetVip(),
		Ports:     spec.GetTask().GetPorts(),
		Networks:  serviceNetworks(spec.GetTask()),
	}
}

// serviceNetworks are the networks a service's tasks join, with aliases:
// the spec's, or the default network.
func serviceNetworks(t *shoalpb.TaskSpec) []*shoalpb.NetworkAttachmentConfig {
	if len(t.GetNetworks()) == 0 {
		return []*shoalpb.NetworkAttachmentConfig{{Target: allocator.DefaultNetworkID}}
	}
	return t.GetNetworks()
}

func isDown(n *shoalpb.Node) bool {
	return n.GetStatus().GetState() == shoalpb.NodeState_NODE_STATE_DOWN
}

// dnsTTLMs resolves ClusterSpec.dns_ttl_ms: the default for 0, -1 for a
// TTL of 0.
func dnsTTLMs(spec *shoalpb.ClusterSpec) int64 {
	switch ttl := spec.GetDnsTtlMs(); {
	case ttl == 0:
		return DefaultDNSTTLMs
	case ttl < 0:
		return -1
	default:
		return ttl
	}
}
