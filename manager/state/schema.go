package state

import (
	"fmt"
	"net/netip"
	"sort"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"shoal/manager/allocator"
	shoalpb "shoal/proto"
)

// object is what every stored message offers: an id that is its primary key
// and a Meta that Apply stamps with the Raft index.
type object interface {
	proto.Message
	GetId() string
	GetMeta() *shoalpb.Meta
}

// table describes one kind of stored object: its go-memdb table, the
// StoreAction oneof target that carries it and its Snapshot field. Adding a
// kind of object (services, tasks, …) is one entry in tables.
type table struct {
	name string
	// target returns the action's object if the action targets this table.
	target func(a *shoalpb.StoreAction) (object, bool)
	// load lists this table's objects in a snapshot.
	load func(s *shoalpb.Snapshot) []object
	// dump appends one object of this table to a snapshot.
	dump func(s *shoalpb.Snapshot, o object)
	// indexes are secondary indexes: index name -> Go field path.
	indexes map[string]string
	// unique names the secondary indexes whose values Apply keeps unique.
	unique []string
	// check, when set, refuses a write that would break a rule across the
	// table's objects that no index can state; it sees the stored objects
	// (obj is not written yet).
	check func(txn *memdb.Txn, obj object) error
	// checkDelete, when set, refuses the deletion of stored.
	checkDelete func(txn *memdb.Txn, stored object) error
}

// Table names. ReadTx methods and tests use them; the rest of the code goes
// through tables.
const (
	tableCluster  = "cluster"
	tableNodes    = "nodes"
	tableServices = "services"
	tableTasks    = "tasks"
	tableNetworks = "networks"
)

// Secondary indexes.
const (
	indexServiceName = "name"
	indexServiceVIP  = "vip"
	indexServiceID   = "service_id"
	indexNodeID      = "node_id"
	indexNetworkName = "name"
	// indexNetworkSubnet keeps two networks created at once through
	// different managers from taking the same free subnet.
	indexNetworkSubnet = "subnet"
)

// tables is the registry of stored kinds, in snapshot order.
var tables = []*table{
	newTable(tableCluster, (*shoalpb.StoreAction).GetCluster,
		func(s *shoalpb.Snapshot) *[]*shoalpb.Cluster { return &s.Clusters }),
	newTable(tableNodes, (*shoalpb.StoreAction).GetNode,
		func(s *shoalpb.Snapshot) *[]*shoalpb.Node { return &s.Nodes }),
	withCheck(withIndexes(newTable(tableServices, (*shoalpb.StoreAction).GetService,
		func(s *shoalpb.Snapshot) *[]*shoalpb.Service { return &s.Services }),
		map[string]string{indexServiceName: "Spec.Name", indexServiceVIP: "Endpoint.Vip"}, indexServiceName, indexServiceVIP),
		networksExist),
	withIndexes(newTable(tableTasks, (*shoalpb.StoreAction).GetTask,
		func(s *shoalpb.Snapshot) *[]*shoalpb.Task { return &s.Tasks }),
		map[string]string{indexServiceID: "ServiceId", indexNodeID: "NodeId"}),
	withCheck(withIndexes(newTable(tableNetworks, (*shoalpb.StoreAction).GetNetwork,
		func(s *shoalpb.Snapshot) *[]*shoalpb.Network { return &s.Networks }),
		map[string]string{indexNetworkName: "Spec.Name", indexNetworkSubnet: "Subnet"}, indexNetworkName, indexNetworkSubnet),
		subnetsApart, networkUnused),
}

// withCheck sets t's checks: of writes, then (optional) of deletions.
func withCheck(t *table, check func(*memdb.Txn, object) error, checkDelete ...func(*memdb.Txn, object) error) *table {
	t.check = check
	if len(checkDelete) > 0 {
		t.checkDelete = checkDelete[0]
	}
	return t
}

// networksExist refuses a service on a network that is not stored (the
// default network is never stored): a network removed while the service was
// being written.
func networksExist(txn *memdb.Txn, obj object) error {
	svc := obj.(*shoalpb.Service)
	for _, att := range svc.GetSpec().GetTask().GetNetworks() {
		id := att.GetTarget()
		if id == allocator.DefaultNetworkID || getObject[*shoalpb.Network](txn, tableNetworks, id) != nil {
			continue
		}
		return fmt.Errorf("%w: service %s names network %s, which does not exist (it was removed); 'shoal network ls' lists the networks", ErrInUse, svc.GetSpec().GetName(), id)
	}
	return nil
}

// networkUnused refuses to delete a network a service is on.
func networkUnused(txn *memdb.Txn, stored object) error {
	n := stored.(*shoalpb.Network)
	for _, svc := range listTable[*shoalpb.Service](txn, tableServices) {
		for _, att := range svc.GetSpec().GetTask().GetNetworks() {
			if att.GetTarget() == n.GetId() {
				return fmt.Errorf("%w: network %s is used by service %s; remove the service or run 'shoal service update --network-rm %s %s' first",
					ErrInUse, n.GetSpec().GetName(), svc.GetSpec().GetName(), n.GetSpec().GetName(), svc.GetSpec().GetName())
			}
		}
	}
	return nil
}

// subnetsApart refuses a network whose subnet overlaps another network's:
// the unique index only catches equal ones, and creates through several
// managers may race with overlapping --subnet values.
func subnetsApart(txn *memdb.Txn, obj object) error {
	n := obj.(*shoalpb.Network)
	p, err := netip.ParsePrefix(n.GetSubnet())
	if err != nil {
		return nil
	}
	for _, other := range listTable[*shoalpb.Network](txn, tableNetworks) {
		q, err := netip.ParsePrefix(other.GetSubnet())
		if err == nil && other.GetId() != n.GetId() && q.Overlaps(p) {
			return fmt.Errorf("%w: %s subnet %s overlaps network %s (%s)", ErrExists, tableNetworks, p, other.GetSpec().GetName(), q)
		}
	}
	return nil
}

func withIndexes(t *table, indexes map[string]string, unique ...string) *table {
	t.indexes, t.unique = indexes, unique
	return t
}

// newTable builds a table descriptor from the generated accessors of one
// message type. target is the StoreAction getter of the oneof case (it
// returns nil for other cases); field points at the Snapshot's repeated field.
func newTable[T object](name string, target func(*shoalpb.StoreAction) T, field func(*shoalpb.Snapshot) *[]T) *table {
	var zero T
	if fd := zero.ProtoReflect().Descriptor().Fields().ByName("meta"); fd == nil || fd.Message() == nil ||
		fd.Message().FullName() != (*shoalpb.Meta)(nil).ProtoReflect().Descriptor().FullName() {
		panic(fmt.Sprintf("state: table %s: message has no meta field of type Meta", name))
	}
	return &table{
		name: name,
		target: func(a *shoalpb.StoreAction) (object, bool) {
			o := target(a)
			if !o.ProtoReflect().IsValid() { // nil pointer: another oneof case
				return nil, false
			}
			return o, true
		},
		load: func(s *shoalpb.Snapshot) []object {
			list := *field(s)
			out := make([]object, len(list))
			for i, o := range list {
				out[i] = o
			}
			return out
		},
		dump: func(s *shoalpb.Snapshot, o object) {
			p := field(s)
			*p = append(*p, o.(T))
		},
	}
}

// tableFor finds the table an action targets.
func tableFor(a *shoalpb.StoreAction) (*table, object, error) {
	for _, t := range tables {
		if o, ok := t.target(a); ok {
			return t, o, nil
		}
	}
	if target := a.GetTarget(); target != nil {
		return nil, nil, fmt.Errorf("%w: unknown action target %T", ErrInvalidAction, target)
	}
	return nil, nil, fmt.Errorf("%w: action has no target object", ErrInvalidAction)
}

// ensureMeta returns o's Meta, creating it if the message has none.
func ensureMeta(o object) *shoalpb.Meta {
	if m := o.GetMeta(); m != nil {
		return m
	}
	m := &shoalpb.Meta{}
	msg := o.ProtoReflect()
	msg.Set(msg.Descriptor().Fields().ByName("meta"), protoreflect.ValueOfMessage(m.ProtoReflect()))
	return m
}

// schema is the go-memdb schema: every table is keyed by the object's id.
func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for _, t := range tables {
		ts := &memdb.TableSchema{
			Name: t.name,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		}
		for name, field := range t.indexes {
			ts.Indexes[name] = &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: &fieldPathIndex{path: field}}
		}
		s.Tables[t.name] = ts
	}
	return s
}

// newDB returns an empty store.
func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("state: invalid memdb schema: %v", err)) // a programming error
	}
	return db
}

// ReadTx is a consistent, read-only view of the store. Objects it returns are
// shared with the store and with other readers: they must not be modified
// (proto.Clone them first), but may be kept after View returns. The ReadTx
// itself is only valid inside the View callback.
type ReadTx interface {
	// Cluster returns the cluster object, nil if there is none yet.
	Cluster() *shoalpb.Cluster
	// Node returns the node with that id, nil if there is none.
	Node(id string) *shoalpb.Node
	// Nodes returns every node, sorted by id.
	Nodes() []*shoalpb.Node
	// Service returns the service with that id, nil if there is none.
	Service(id string) *shoalpb.Service
	// ServiceByName returns the service with that name, nil if there is none.
	ServiceByName(name string) *shoalpb.Service
	// Services returns every service, sorted by id.
	Services() []*shoalpb.Service
	// Task returns the task with that id, nil if there is none.
	Task(id string) *shoalpb.Task
	// Tasks returns every task, sorted by id.
	Tasks() []*shoalpb.Task
	// TasksByService returns the tasks of one service, sorted by id.
	TasksByService(serviceID string) []*shoalpb.Task
	// TasksByNode returns the tasks assigned to one node, sorted by id.
	TasksByNode(nodeID string) []*shoalpb.Task
	// Network returns the network with that id, nil if there is none.
	Network(id string) *shoalpb.Network
	// NetworkByName returns the network with that name, nil if there is none.
	NetworkByName(name string) *shoalpb.Network
	// Networks returns every stored network, sorted by id (the default
	// network is not stored).
	Networks() []*shoalpb.Network
}

// readTx implements ReadTx over a go-memdb read transaction.
type readTx struct{ txn *memdb.Txn }

func (r readTx) Cluster() *shoalpb.Cluster {
	list := listTable[*shoalpb.Cluster](r.txn, tableCluster)
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

func (r readTx) Node(id string) *shoalpb.Node { return getObject[*shoalpb.Node](r.txn, tableNodes, id) }

func (r readTx) Nodes() []*shoalpb.Node { return listTable[*shoalpb.Node](r.txn, tableNodes) }

func (r readTx) Service(id string) *shoalpb.Service {
	return getObject[*shoalpb.Service](r.txn, tableServices, id)
}

func (r readTx) ServiceByName(name string) *shoalpb.Service {
	list := listIndex[*shoalpb.Service](r.txn, tableServices, indexServiceName, name)
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

func (r readTx) Services() []*shoalpb.Service {
	return listTable[*shoalpb.Service](r.txn, tableServices)
}

func (r readTx) Task(id string) *shoalpb.Task { return getObject[*shoalpb.Task](r.txn, tableTasks, id) }

func (r readTx) Tasks() []*shoalpb.Task { return listTable[*shoalpb.Task](r.txn, tableTasks) }

func (r readTx) TasksByService(serviceID string) []*shoalpb.Task {
	return listIndex[*shoalpb.Task](r.txn, tableTasks, indexServiceID, serviceID)
}

func (r readTx) TasksByNode(nodeID string) []*shoalpb.Task {
	return listIndex[*shoalpb.Task](r.txn, tableTasks, indexNodeID, nodeID)
}

func (r readTx) Network(id string) *shoalpb.Network {
	return getObject[*shoalpb.Network](r.txn, tableNetworks, id)
}

func (r readTx) NetworkByName(name string) *shoalpb.Network {
	list := listIndex[*shoalpb.Network](r.txn, tableNetworks, indexNetworkName, name)
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

func (r readTx) Networks() []*shoalpb.Network {
	return listTable[*shoalpb.Network](r.txn, tableNetworks)
}

// getObject returns the object with that id, or T's zero value.
func getObject[T object](txn *memdb.Txn, tableName, id string) T {
	var zero T
	raw, err := txn.First(tableName, "id", id)
	if err != nil || raw == nil {
		return zero
	}
	return raw.(T)
}

// listIndex returns the objects whose secondary index equals value, sorted by id.
func listIndex[T object](txn *memdb.Txn, tableName, index, value string) []T {
	it, err := txn.Get(tableName, index, value)
	if err != nil {
		return nil // only on an unknown table or index: a programming error
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// listTable returns every object of a table, sorted by id.
func listTable[T object](txn *memdb.Txn, tableName string) []T {
	it, err := txn.Get(tableName, "id")
	if err != nil {
		return nil // only on an unknown table or index: a programming error
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}
