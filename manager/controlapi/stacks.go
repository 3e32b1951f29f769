package controlapi

// Stacks. A stack is the services and networks that carry its name in the
// StackLabel, as in Docker; there is no stack object. The CLI turns compose
// files into one DeployStackRequest (package stack), and DeployStack writes
// all of it in ONE store command built on a draft of the state: the
// networks first (so the services can name them), then the services (each
// new one taking a VIP the ones before it did not), then what --prune
// removes. Every spec is validated before the draft and every action is
// checked by the draft as the FSM would, so a refused deploy changes
// nothing and a deploy that was acknowledged is complete.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/ids"
	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// DeployStack creates or updates a stack's networks and services in one
// store write. Unchanged services are left alone; a changed one rolls out
// under its update_config.
func (s *Server) DeployStack(ctx context.Context, req *shoalpb.DeployStackRequest) (*shoalpb.DeployStackResponse, error) {
	stack := req.GetStack()
	if err := servicespec.ValidateStackName(stack); err != nil {
		return nil, invalid("stack", "%v", err)
	}
	nets, svcs, err := stackSpecs(stack, req.GetNetworks(), req.GetServices())
	if err != nil {
		return nil, err
	}
	var changes []*shoalpb.StackChange
	err = s.updateDraft(ctx, func(d *state.Draft) error {
		changes = changes[:0]
		now := timestamppb.New(s.cfg.Now())
		for _, spec := range nets {
			c, err := deployNetwork(d, stack, proto.Clone(spec).(*shoalpb.NetworkSpec), now)
			if err != nil {
				return err
			}
			changes = append(changes, c)
		}
		for _, spec := range svcs {
			c, err := s.deployService(d, stack, proto.Clone(spec).(*shoalpb.ServiceSpec), now)
			if err != nil {
				return inService(spec.GetName(), err)
			}
			changes = append(changes, c)
		}
		if req.GetPrune() {
			pruned, err := removeStackObjects(d, stack, func(name string) bool {
				return !slices.ContainsFunc(svcs, func(s *shoalpb.ServiceSpec) bool { return s.GetName() == name }) &&
					!slices.ContainsFunc(nets, func(n *shoalpb.NetworkSpec) bool { return n.GetName() == name })
			})
			if err != nil {
				return err
			}
			changes = append(changes, pruned...)
		}
		for _, spec := range svcs {
			if err := validateDependencies(d, spec); err != nil {
				return inService(spec.GetName(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &shoalpb.DeployStackResponse{Changes: changes}, nil
}

// RemoveStack removes every service and network of a stack in one store
// write; the orchestrator then stops the tasks.
func (s *Server) RemoveStack(ctx context.Context, req *shoalpb.RemoveStackRequest) (*shoalpb.RemoveStackResponse, error) {
	stack := req.GetStack()
	if err := servicespec.ValidateStackName(stack); err != nil {
		return nil, invalid("stack", "%v", err)
	}
	var changes []*shoalpb.StackChange
	err := s.updateDraft(ctx, func(d *state.Draft) error {
		var err error
		changes, err = removeStackObjects(d, stack, func(string) bool { return true })
		if err == nil && len(changes) == 0 {
			err = status.Errorf(codes.NotFound, "no stack named %q; 'shoal stack ls' lists the stacks", stack)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &shoalpb.RemoveStackResponse{Changes: changes}, nil
}

// stackSpecs validates a stack's specs before anything is read, and returns
// copies labelled with the stack, services with their defaults filled in.
func stackSpecs(stack string, netSpecs []*shoalpb.NetworkSpec, svcSpecs []*shoalpb.ServiceSpec) ([]*shoalpb.NetworkSpec, []*shoalpb.ServiceSpec, error) {
	prefix := stack + "_"
	seen := map[string]bool{}
	nets := make([]*shoalpb.NetworkSpec, 0, len(netSpecs))
	for _, n := range netSpecs {
		n = proto.Clone(n).(*shoalpb.NetworkSpec)
		if !strings.HasPrefix(n.GetName(), prefix) {
			return nil, nil, invalid("networks", "network %q of stack %s must be named %s<name>; an external network is named by the services only", n.GetName(), stack, prefix)
		}
		if seen["network/"+n.GetName()] {
			return nil, nil, invalid("networks", "network %s is listed twice", n.GetName())
		}
		seen["network/"+n.GetName()] = true
		if err := validateNetworkSpec(n); err != nil {
			return nil, nil, inNetwork(n.GetName(), err)
		}
		n.Labels = withStackLabel(n.Labels, stack)
		nets = append(nets, n)
	}
	svcs := make([]*shoalpb.ServiceSpec, 0, len(svcSpecs))
	for _, spec := range svcSpecs {
		spec = proto.Clone(spec).(*shoalpb.ServiceSpec)
		if !strings.HasPrefix(spec.GetName(), prefix) {
			return nil, nil, invalid("services", "service %q of stack %s must be named %s<name>", spec.GetName(), stack, prefix)
		}
		if seen["service/"+spec.GetName()] {
			return nil, nil, invalid("services", "service %s is listed twice", spec.GetName())
		}
		seen["service/"+spec.GetName()] = true
		if err := validateSpec(spec); err != nil {
			return nil, nil, inService(spec.GetName(), err)
		}
		servicespec.FillDefaults(spec)
		servicespec.Fill(spec)
		spec.Labels = withStackLabel(spec.Labels, stack)
		svcs = append(svcs, spec)
	}
	return nets, svcs, nil
}

func withStackLabel(labels map[string]string, stack string) map[string]string {
	if labels == nil {
		labels = map[string]string{}
	}
	labels[servicespec.StackLabel] = stack
	return labels
}

// deployNetwork creates a missing network of the stack. An existing one is
// kept as it is: networks are not updated in place, so one whose subnet
// the file changed is refused.
func deployNetwork(d *state.Draft, stack string, spec *shoalpb.NetworkSpec, now *timestamppb.Timestamp) (*shoalpb.StackChange, error) {
	change := &shoalpb.StackChange{Kind: "network", Name: spec.GetName()}
	if cur := d.NetworkByName(spec.GetName()); cur != nil {
		if owner := cur.GetSpec().GetLabels()[servicespec.StackLabel]; owner != stack {
			return nil, status.Errorf(codes.FailedPrecondition, "network %s exists and is not part of stack %s; remove it ('shoal network rm %s') or name the network external in the file", spec.GetName(), stack, spec.GetName())
		}
		if spec.GetSubnet() != "" && spec.GetSubnet() != cur.GetSubnet() {
			return nil, invalid("networks", "network %s has subnet %s, and the file asks for %s; networks are not changed in place: remove the stack first ('shoal stack rm %s') to change it", spec.GetName(), cur.GetSubnet(), spec.GetSubnet(), stack)
		}
		change.Id = cur.GetId()
		return change, nil
	}
	nw := &shoalpb.Network{Id: ids.New(), Meta: &shoalpb.Meta{CreatedAt: now, UpdatedAt: now}, Spec: spec}
	var err error
	if nw.Subnet, err = networkSubnet(d, spec, 1); err != nil {
		return nil, inNetwork(spec.GetName(), err)
	}
	if err := d.Apply(&shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Network{Network: nw}}); err != nil {
		return nil, err
	}
	change.Action, change.Id = shoalpb.StackAction_STACK_ACTION_CREATED, nw.Id
	return change, nil
}

// deployService creates a missing service of the stack, or updates one
// whose spec changed, as CreateService and UpdateService would.
func (s *Server) deployService(d *state.Draft, stack string, spec *shoalpb.ServiceSpec, now *timestamppb.Timestamp) (*shoalpb.StackChange, error) {
	change := &shoalpb.StackChange{Kind: "service", Name: spec.GetName()}
	if err := resolveNetworks(d, spec); err != nil {
		return nil, err
	}
	cur := d.ServiceByName(spec.GetName())
	var actions []*shoalpb.StoreAction
	switch {
	case cur == nil:
		svc := &shoalpb.Service{Id: ids.New(), Meta: &shoalpb.Meta{CreatedAt: now, UpdatedAt: now}, Spec: spec, SpecVersion: 1}
		if servicespec.IsJob(spec.Mode) {
			svc.JobIteration = 1
		}
		var err error
		if svc.Endpoint, err = endpointFor(d, svc, nil, 0); err != nil {
			return nil, err
		}
		actions = []*shoalpb.StoreAction{{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}}}
		change.Action, change.Id = shoalpb.StackAction_STACK_ACTION_CREATED, svc.Id
	case cur.GetSpec().GetLabels()[servicespec.StackLabel] != stack:
		return nil, status.Errorf(codes.FailedPrecondition, "a service named %s exists and is not part of stack %s; remove it ('shoal service rm %s') or deploy under another stack name", spec.GetName(), stack, spec.GetName())
	case spec.GetMode() != cur.GetSpec().GetMode():
		return nil, invalid("deploy.mode", "a service's mode cannot change (%s → %s); remove the service ('shoal service rm %s') and deploy again", ModeName(cur.Spec.Mode), ModeName(spec.Mode), spec.GetName())
	default:
		change.Id = cur.GetId()
		// A forced redeploy by hand is not undone by deploying the same file.
		spec.Task.ForceUpdate = cur.GetSpec().GetTask().GetForceUpdate()
		if proto.Equal(spec, cur.GetSpec()) {
			return change, nil
		}
		upd := servicespec.Replace(cur, spec, shoalpb.UpdateState_UPDATE_STATE_UPDATING, s.cfg.Now())
		var err error
		if actions, err = replaceService(d, cur, upd); err != nil {
			return nil, err
		}
		change.Action = shoalpb.StackAction_STACK_ACTION_UPDATED
	}
	for _, a := range actions {
		if err := d.Apply(a); err != nil {
			return nil, err
		}
	}
	return change, nil
}

// removeStackObjects deletes the stack's services, then its networks, whose
// names gone accepts, each kind in name order.
func removeStackObjects(d *state.Draft, stack string, gone func(name string) bool) ([]*shoalpb.StackChange, error) {
	var changes []*shoalpb.StackChange
	remove := func(kind, id, name string, a *shoalpb.StoreAction) error {
		if err := d.Apply(a); err != nil {
			return err
		}
		changes = append(changes, &shoalpb.StackChange{Kind: kind, Name: name, Id: id, Action: shoalpb.StackAction_STACK_ACTION_REMOVED})
		return nil
	}
	svcs := d.Services()
	slices.SortFunc(svcs, func(a, b *shoalpb.Service) int { return strings.Compare(a.GetSpec().GetName(), b.GetSpec().GetName()) })
	for _, svc := range svcs {
		if svc.GetSpec().GetLabels()[servicespec.StackLabel] != stack || !gone(svc.GetSpec().GetName()) {
			continue
		}
		if err := remove("service", svc.GetId(), svc.GetSpec().GetName(), &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE, Target: &shoalpb.StoreAction_Service{Service: svc}}); err != nil {
			return nil, err
		}
	}
	nets := d.Networks()
	slices.SortFunc(nets, func(a, b *shoalpb.Network) int { return strings.Compare(a.GetSpec().GetName(), b.GetSpec().GetName()) })
	for _, nw := range nets {
		if nw.GetSpec().GetLabels()[servicespec.StackLabel] != stack || !gone(nw.GetSpec().GetName()) {
			continue
		}
		if err := remove("network", nw.GetId(), nw.GetSpec().GetName(), &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_DELETE, Target: &shoalpb.StoreAction_Network{Network: nw}}); err != nil {
			return nil, err
		}
	}
	return changes, nil
}

// inService and inNetwork prefix an error with the object it is about,
// keeping its code. A service's refusal names the field by its CLI flag
// (the control API's field names); for a stack it names the compose key.
func inService(name string, err error) error {
	if st, ok := status.FromError(err); ok {
		if field, rest, ok := strings.Cut(st.Message(), ": "); ok && strings.HasPrefix(field, "--") {
			err = status.Errorf(st.Code(), "%s: %s", composeKey(field), rest)
		}
	}
	return within("service "+name, err)
}

// composeKeys maps the CLI flags that refusals name onto compose keys;
// composeKeyPrefixes does it for families of flags.
var (
	composeKeys = map[string]string{
		"--name": "name", "--mode": "deploy.mode", "--replicas": "deploy.replicas",
		"--env": "environment", "--label": "deploy.labels", "--workdir": "working_dir",
		"--stop-signal": "stop_signal", "--stop-grace-period": "stop_grace_period",
		"--publish": "ports", "--network": "networks", "--mount": "volumes",
		"--constraint": "deploy.placement.constraints", "--placement-pref": "deploy.placement.preferences",
		"--limit-memory": "deploy.resources.limits.memory", "--reserve-memory": "deploy.resources.reservations.memory",
		"--restart-delay/--restart-window": "deploy.restart_policy.delay/window", "--no-healthcheck": "healthcheck.disable",
	}
	composeKeyPrefixes = []struct{ flag, key string }{
		{"--health", "healthcheck"}, {"--readiness", "healthcheck"},
		{"--update-", "deploy.update_config"}, {"--rollback-", "deploy.rollback_config"},
	}
)

func composeKey(flag string) string {
	if key, ok := composeKeys[flag]; ok {
		return key
	}
	for _, p := range composeKeyPrefixes {
		if strings.HasPrefix(flag, p.flag) {
			return p.key
		}
	}
	return flag
}

func inNetwork(name string, err error) error { return within("network "+name, err) }

func within(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return status.Errorf(st.Code(), "%s: %s", what, st.Message())
}
