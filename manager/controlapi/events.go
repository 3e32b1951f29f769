package controlapi

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// Events streams node, service and task changes as they commit on this manager.
func (s *Server) Events(req *shoalpb.EventsRequest, stream grpc.ServerStreamingServer[shoalpb.Event]) error {
	f := req.GetFilters()
	for key, value := range f {
		switch key {
		case "type":
			switch value {
			case "node", "service", "task", "cluster":
			default:
				return status.Errorf(codes.InvalidArgument, "filter type=%q: use node, service, task or cluster", value)
			}
		case "service", "node":
		default:
			return status.Errorf(codes.InvalidArgument, "unknown filter %q; use type, service or node", key)
		}
	}
	ctx := stream.Context()
	for {
		events := s.cfg.Store.Watch(ctx)
		seen := s.updateStates()
		for ev := range events {
			if ev.Kind == state.EventReset {
				seen = s.updateStates()
				continue
			}
			e := toEvent(ev, s.cfg.Now())
			if e == nil {
				continue
			}
			seen.annotate(e, ev)
			if !matchEvent(e, f) {
				continue
			}
			if err := stream.Send(e); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// The watch fell behind and was closed; say so and go on watching.
		if err := stream.Send(&shoalpb.Event{Time: timestamppb.New(s.cfg.Now()), Type: "cluster", Action: "resync",
			Attributes: map[string]string{"reason": "events were dropped because this client read too slowly"}}); err != nil {
			return err
		}
	}
}

func toEvent(ev state.Event, now time.Time) *shoalpb.Event {
	action := map[state.EventKind]string{state.EventCreate: "create", state.EventUpdate: "update", state.EventDelete: "remove"}[ev.Kind]
	if action == "" {
		return nil
	}
	e := &shoalpb.Event{Time: timestamppb.New(now), Action: action, Attributes: map[string]string{}}
	switch o := ev.Object.(type) {
	case *shoalpb.Node:
		e.Type, e.Id, e.Name = "node", o.Id, o.GetDescription().GetHostname()
		e.Attributes["state"] = StateName(o.GetStatus().GetState())
		e.Attributes["availability"] = AvailabilityName(o.GetSpec().GetAvailability())
		e.Attributes["role"] = RoleName(o.GetRole())
		e.Attributes["addr"] = o.GetStatus().GetAddr()
	case *shoalpb.Service:
		e.Type, e.Id, e.Name = "service", o.Id, o.GetSpec().GetName()
		e.Attributes["version"] = fmt.Sprint(o.SpecVersion)
	case *shoalpb.Task:
		e.Type, e.Id, e.Name = "task", o.Id, servicespec.TaskName(o)
		e.Attributes["service"] = o.ServiceName
		e.Attributes["node"] = o.NodeId
		e.Attributes["state"] = TaskStateName(o.GetStatus().GetState())
		e.Attributes["desired"] = TaskStateName(o.DesiredState)
		if msg := o.GetStatus().GetErr(); msg != "" {
			e.Attributes["error"] = msg
		}
		// A health or readiness change is an update whose state stays.
		if h := o.GetStatus().GetHealth(); h != shoalpb.HealthState_HEALTH_NONE {
			e.Attributes["health"] = HealthName(h)
		}
		if o.GetStatus().GetState() == shoalpb.TaskState_TASK_STATE_RUNNING {
			e.Attributes["ready"] = fmt.Sprint(o.GetStatus().GetReady())
		}
	case *shoalpb.Cluster:
		e.Type, e.Id, e.Name = "cluster", o.Id, o.GetSpec().GetName()
	default:
		return nil
	}
	return e
}

// updateStates are the services' update states as one event stream last
// saw them: a store event carries only the new object, and a service event
// says when its update state changed.
type updateStates map[string]shoalpb.UpdateState

// updateStates reads every service's update state, after the watch opened:
// a change committed in between comes as an event that looks unchanged.
func (s *Server) updateStates() updateStates {
	seen := updateStates{}
	s.cfg.Store.View(func(tx state.ReadTx) {
		for _, svc := range tx.Services() {
			seen[svc.Id] = svc.GetUpdateStatus().GetState()
		}
	})
	return seen
}

// annotate adds updatestate.old, updatestate.new and the status message to
// the event of a service whose update state changed.
func (seen updateStates) annotate(e *shoalpb.Event, ev state.Event) {
	svc, ok := ev.Object.(*shoalpb.Service)
	if !ok {
		return
	}
	if ev.Kind == state.EventDelete {
		delete(seen, svc.Id)
		return
	}
	old, cur := seen[svc.Id], svc.GetUpdateStatus().GetState()
	seen[svc.Id] = cur
	if old == cur {
		return
	}
	e.Attributes["updatestate.old"] = UpdateStateName(old)
	e.Attributes["updatestate.new"] = UpdateStateName(cur)
	if msg := svc.GetUpdateStatus().GetMessage(); msg != "" {
		e.Attributes["message"] = msg
	}
}

func matchEvent(e *shoalpb.Event, f map[string]string) bool {
	if t := f["type"]; t != "" && e.Type != t {
		return false
	}
	if svc := f["service"]; svc != "" && !(e.Type == "service" && (e.Name == svc || e.Id == svc)) && e.Attributes["service"] != svc {
		return false
	}
	if node := f["node"]; node != "" && !(e.Type == "node" && e.Id == node) && e.Attributes["node"] != node {
		return false
	}
	return true
}

// HealthName is the user-facing name of a health state: "starting",
// "healthy", "unhealthy", or "none" for a task without a check.
func HealthName(h shoalpb.HealthState) string {
	return strings.ToLower(strings.TrimPrefix(h.String(), "HEALTH_"))
}

// TaskStateName is the user-facing name of a task state.
func TaskStateName(s shoalpb.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}
