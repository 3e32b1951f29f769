package controlapi

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/ids"
	"shoal/manager/allocator"
	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
	"shoal/scheduler"
)

// CreateService validates and stores a new service; the orchestrator creates
// its tasks.
func (s *Server) CreateService(ctx context.Context, req *shoalpb.CreateServiceRequest) (*shoalpb.Service, error) {
	spec := req.GetSpec()
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	servicespec.FillDefaults(spec)
	servicespec.Fill(spec)
	now := timestamppb.New(s.cfg.Now())
	svc := &shoalpb.Service{
		Id:          ids.New(),
		Meta:        &shoalpb.Meta{CreatedAt: now, UpdatedAt: now},
		Spec:        spec,
		SpecVersion: 1,
	}
	if servicespec.IsJob(spec.Mode) {
		svc.JobIteration = 1
	}
	for attempt := 1; ; attempt++ {
		skip := 0
		if attempt > 1 {
			skip = rand.IntN(8 * attempt)
		}
		err := s.cfg.Store.CatchUp(ctx)
		if err != nil {
			return nil, s.StoreError(err)
		}
		s.cfg.Store.View(func(tx state.ReadTx) {
			if err = resolveNetworks(tx, spec); err == nil {
				err = validateDependencies(tx, spec)
			}
			if err == nil {
				svc.Endpoint, err = endpointFor(tx, svc, nil, skip)
			}
		})
		if err != nil {
			return nil, err
		}
		_, err = s.cfg.Store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}})
		if err == nil {
			break
		}
		var retry bool
		s.cfg.Store.View(func(tx state.ReadTx) { retry = vipTaken(tx, svc, err) })
		switch {
		case retry && attempt < vipAttempts:
			continue
		case errors.Is(err, state.ErrExists) && !retry:
			return nil, status.Errorf(codes.AlreadyExists, "--name: a service named %q already exists; pick another name or update it with 'shoal service update'", spec.Name)
		}
		return nil, s.StoreError(err)
	}
	return s.GetService(ctx, &shoalpb.GetServiceRequest{Service: svc.Id})
}

// GetService finds a service by ID, unique ID prefix or name.
func (s *Server) GetService(ctx context.Context, req *shoalpb.GetServiceRequest) (*shoalpb.Service, error) {
	var svc *shoalpb.Service
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) { svc, err = resolveService(tx, req.GetService()) })
	return svc, err
}

func resolveService(tx state.ReadTx, ref string) (*shoalpb.Service, error) {
	if ref == "" {
		return nil, status.Error(codes.InvalidArgument, "service: missing service name or ID")
	}
	if svc := tx.Service(ref); svc != nil {
		return svc, nil
	}
	if svc := tx.ServiceByName(ref); svc != nil {
		return svc, nil
	}
	var matches []string
	var found *shoalpb.Service
	for _, svc := range tx.Services() {
		if strings.HasPrefix(svc.Id, ref) {
			matches = append(matches, svc.Id)
			found = svc
		}
	}
	switch len(matches) {
	case 0:
		return nil, status.Errorf(codes.NotFound, "service %q not found; 'shoal service ls' lists the services", ref)
	case 1:
		return found, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "service %q is ambiguous: it matches %s; use the name or a longer ID prefix", ref, strings.Join(matches, ", "))
}

// ListServices lists services with their task counts.
func (s *Server) ListServices(ctx context.Context, req *shoalpb.ListServicesRequest) (*shoalpb.ListServicesResponse, error) {
	for key := range req.GetFilters() {
		switch key {
		case "name", "id", "mode", "label":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown filter %q; use one of name, id, mode, label", key)
		}
	}
	resp := &shoalpb.ListServicesResponse{}
	s.cfg.Store.View(func(tx state.ReadTx) {
		nodes := tx.Nodes()
		for _, svc := range tx.Services() {
			if !matchService(svc, req.GetFilters()) {
				continue
			}
			resp.Services = append(resp.Services, serviceView(tx, svc, nodes))
		}
	})
	sort.Slice(resp.Services, func(i, j int) bool {
		return resp.Services[i].Service.Spec.Name < resp.Services[j].Service.Spec.Name
	})
	return resp, nil
}

func matchService(svc *shoalpb.Service, filters map[string]string) bool {
	for key, want := range filters {
		switch key {
		case "name":
			if !strings.HasPrefix(svc.Spec.Name, want) {
				return false
			}
		case "id":
			if !strings.HasPrefix(svc.Id, want) {
				return false
			}
		case "mode":
			if ModeName(svc.Spec.Mode) != want {
				return false
			}
		case "label":
			k, v, hasValue := strings.Cut(want, "=")
			got, ok := svc.Spec.Labels[k]
			if !ok || (hasValue && got != v) {
				return false
			}
		}
	}
	return true
}

// serviceView counts a service's tasks and says which dependency its first
// tasks wait for.
func serviceView(tx state.ReadTx, svc *shoalpb.Service, nodes []*shoalpb.Node) *shoalpb.ServiceView {
	lookup := func(name string) (*shoalpb.Service, []*shoalpb.Task) {
		other := tx.ServiceByName(name)
		if other == nil {
			return nil, nil
		}
		return other, tx.TasksByService(other.Id)
	}
	v := &shoalpb.ServiceView{Service: svc, Waiting: servicespec.Waiting(svc, lookup)}
	for _, t := range tx.TasksByService(svc.Id) {
		if t.DesiredState == shoalpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_RUNNING {
			v.Running++
		}
		if t.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_COMPLETE && t.JobIteration == svc.JobIteration {
			v.Completed++
		}
	}
	switch svc.Spec.Mode {
	case shoalpb.ServiceMode_SERVICE_MODE_REPLICATED, shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB:
		v.Desired = svc.Spec.Replicas
	default:
		for _, n := range nodes {
			if scheduler.Eligible(n, svc.Spec.Task) {
				v.Desired++
			}
		}
	}
	return v
}

// UpdateService replaces a service's spec; the old one joins the kept
// specs, and a changed task spec starts a rollout (state UPDATING) that the
// orchestrator carries on. A job starts a new run instead.
func (s *Server) UpdateService(ctx context.Context, req *shoalpb.UpdateServiceRequest) (*shoalpb.Service, error) {
	spec := req.GetSpec()
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	servicespec.FillDefaults(spec)
	servicespec.Fill(spec)
	return s.changeService(ctx, req.GetService(), func(tx state.ReadTx, cur *shoalpb.Service) ([]*shoalpb.StoreAction, error) {
		if req.GetVersion() != 0 && req.GetVersion() != cur.Meta.GetVersion() {
			return nil, status.Errorf(codes.Aborted, "service %s changed since it was read (version %d, now %d); read it again and retry", cur.Spec.Name, req.GetVersion(), cur.Meta.GetVersion())
		}
		if spec.Name != cur.Spec.Name {
			return nil, invalid("--name", "a service cannot be renamed (%q → %q); create a new one", cur.Spec.Name, spec.Name)
		}
		if spec.Mode != cur.Spec.Mode {
			return nil, invalid("--mode", "a service's mode cannot change (%s → %s); create a new service", ModeName(cur.Spec.Mode), ModeName(spec.Mode))
		}
		if err := resolveNetworks(tx, spec); err != nil {
			return nil, err
		}
		if err := validateDependencies(tx, spec); err != nil {
			return nil, err
		}
		if proto.Equal(spec, cur.Spec) {
			return nil, nil
		}
		upd := servicespec.Replace(cur, spec, shoalpb.UpdateState_UPDATE_STATE_UPDATING, s.cfg.Now())
		return replaceService(tx, cur, upd)
	})
}

// changeService runs change on the service ref names, in one store update,
// and returns the service as stored afterwards.
func (s *Server) changeService(ctx context.Context, ref string, change func(tx state.ReadTx, cur *shoalpb.Service) ([]*shoalpb.StoreAction, error)) (*shoalpb.Service, error) {
	var id string
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		cur, err := resolveService(tx, ref)
		if err != nil {
			return nil, err
		}
		id = cur.Id
		return change(tx, cur)
	})
	if err != nil {
		return nil, err
	}
	return s.GetService(ctx, &shoalpb.GetServiceRequest{Service: id})
}

// replaceService is the write of upd, cur with a new spec (an update or a
// rollback): the endpoint follows the spec, and a job starts a new run
// instead of a rollout (jobs are not rolled; the orchestrator never
// advances a job's update_status).
func replaceService(tx state.ReadTx, cur, upd *shoalpb.Service) ([]*shoalpb.StoreAction, error) {
	var err error
	if upd.Endpoint, err = endpointFor(tx, upd, cur.GetEndpoint(), 0); err != nil {
		return nil, err
	}
	if servicespec.IsJob(upd.Spec.Mode) {
		upd.JobIteration++
		upd.UpdateStatus = cur.GetUpdateStatus()
	}
	return []*shoalpb.StoreAction{{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Service{Service: upd}}}, nil
}

// RemoveService deletes a service; the orchestrator stops and removes its tasks.
func (s *Server) RemoveService(ctx context.Context, req *shoalpb.RemoveServiceRequest) (*shoalpb.RemoveServiceResponse, error) {
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		svc, err := resolveService(tx, req.GetService())
		if err != nil {
			return nil, err
		}
		return []*shoalpb.StoreAction{{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE, Target: &shoalpb.StoreAction_Service{Service: svc}}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &shoalpb.RemoveServiceResponse{}, nil
}

// ListTasks lists tasks, filtered by service, node, desired state or ID.
func (s *Server) ListTasks(ctx context.Context, req *shoalpb.ListTasksRequest) (*shoalpb.ListTasksResponse, error) {
	f := req.GetFilters()
	for key := range f {
		switch key {
		case "service", "node", "desired-state", "id", "stack":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown filter %q; use one of service, node, desired-state, id, stack", key)
		}
	}
	var desired []shoalpb.TaskState
	switch f["desired-state"] {
	case "":
	case "running":
		desired = []shoalpb.TaskState{shoalpb.TaskState_TASK_STATE_RUNNING}
	case "shutdown":
		desired = []shoalpb.TaskState{shoalpb.TaskState_TASK_STATE_SHUTDOWN, shoalpb.TaskState_TASK_STATE_REMOVE}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "filter desired-state=%q: use running or shutdown", f["desired-state"])
	}
	resp := &shoalpb.ListTasksResponse{}
	var err error
	s.cfg.Store.View(func(tx state.ReadTx) {
		var tasks []*shoalpb.Task
		nodeID := ""
		if f["node"] != "" {
			n, nerr := s.resolveNode(tx, f["node"])
			if nerr != nil {
				err = nerr
				return
			}
			nodeID = n.Id
		}
		switch {
		case f["service"] != "":
			var svc *shoalpb.Service
			if svc, err = resolveService(tx, f["service"]); err != nil {
				return
			}
			tasks = tx.TasksByService(svc.Id)
		case f["stack"] != "":
			for _, svc := range tx.Services() {
				if svc.GetSpec().GetLabels()[servicespec.StackLabel] == f["stack"] {
					tasks = append(tasks, tx.TasksByService(svc.Id)...)
				}
			}
		case nodeID != "":
			tasks = tx.TasksByNode(nodeID)
		default:
			tasks = tx.Tasks()
		}
		for _, t := range tasks {
			if nodeID != "" && t.NodeId != nodeID {
				continue
			}
			if f["id"] != "" && !strings.HasPrefix(t.Id, f["id"]) {
				continue
			}
			if desired != nil && !slices.Contains(desired, t.DesiredState) {
				continue
			}
			resp.Tasks = append(resp.Tasks, t)
		}
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// UpdateClusterSpec changes cluster-wide settings.
func (s *Server) UpdateClusterSpec(ctx context.Context, req *shoalpb.UpdateClusterSpecRequest) (*shoalpb.ClusterSpec, error) {
	if req.GetTaskHistoryLimit() < 0 || req.GetTaskHistoryLimit() > 1000 {
		return nil, invalid("--task-history-limit", "%d: use 1 to 1000", req.GetTaskHistoryLimit())
	}
	var spec *shoalpb.ClusterSpec
	err := s.update(ctx, func(tx state.ReadTx) ([]*shoalpb.StoreAction, error) {
		cluster := tx.Cluster()
		if cluster == nil {
			return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialised yet")
		}
		c := proto.Clone(cluster).(*shoalpb.Cluster)
		if req.GetTaskHistoryLimit() > 0 {
			c.Spec.TaskHistoryLimit = req.GetTaskHistoryLimit()
		}
		// The request has no pool fields today; this keeps a future one
		// from changing what nodes' subnets and tasks' addresses came from.
		if err := allocator.CheckPoolKept(cluster.GetSpec(), c.GetSpec()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		spec = c.Spec
		if proto.Equal(c, cluster) {
			return nil, nil
		}
		return []*shoalpb.StoreAction{updateCluster(c)}, nil
	})
	return spec, err
}

// ModeName is the user-facing name of a service mode.
func ModeName(m shoalpb.ServiceMode) string {
	switch m {
	case shoalpb.ServiceMode_SERVICE_MODE_GLOBAL:
		return "global"
	case shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB:
		return "replicated-job"
	case shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		return "global-job"
	}
	return "replicated"
}
