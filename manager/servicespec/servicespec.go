// Package servicespec holds the rules of a service's spec history that
// controlapi (update, rollback, promote) and the orchestrator (a failure
// action rollback) must apply the same way: the defaults of update_config and
// rollback_config, the kept earlier specs, and where a rollout starts.
// docs/releases.md says who writes what.
package servicespec

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// MaxHistory is how many earlier specs a service keeps for rollback.
const MaxHistory = 10

// DefaultMonitor is update_config.monitor_ms when the spec sets no config.
const DefaultMonitor = 5 * time.Second

// Timings of a health or readiness check whose fields are 0, as Docker's
// HEALTHCHECK has them (proto/service.proto, HealthCheck).
const (
	DefaultCheckInterval = 30 * time.Second
	DefaultCheckTimeout  = 30 * time.Second
	DefaultCheckRetries  = 3
)

// DefaultUpdateConfig returns the config of a spec that sets none: Docker's
// defaults (one task at a time, stop-first, pause on failure, monitor 5 s).
func DefaultUpdateConfig() *shoalpb.UpdateConfig {
	return &shoalpb.UpdateConfig{
		Parallelism:   1,
		FailureAction: shoalpb.FailureAction_FAILURE_ACTION_PAUSE,
		MonitorMs:     DefaultMonitor.Milliseconds(),
		Order:         shoalpb.UpdateOrder_UPDATE_ORDER_STOP_FIRST,
	}
}

// FillDefaults sets spec's missing update_config and rollback_config to
// DefaultUpdateConfig.
func FillDefaults(spec *shoalpb.ServiceSpec) {
	if spec.UpdateConfig == nil {
		spec.UpdateConfig = DefaultUpdateConfig()
	}
	if spec.RollbackConfig == nil {
		spec.RollbackConfig = DefaultUpdateConfig()
	}
}

// Fill makes every nested message of spec's task present (container,
// resources with limits and reservations, restart policy, placement), in
// place. The control API stores every spec filled, so that a spec written
// by the CLI (which edits a filled copy) and the same spec from a stack
// file compare equal: an absent message and an empty one mean the same,
// and must not look like a change of the task spec (a rollout).
func Fill(spec *shoalpb.ServiceSpec) {
	if spec.Task == nil {
		spec.Task = &shoalpb.TaskSpec{}
	}
	t := spec.Task
	if t.Container == nil {
		t.Container = &shoalpb.ContainerSpec{}
	}
	if t.Resources == nil {
		t.Resources = &shoalpb.Resources{}
	}
	if t.Resources.Limits == nil {
		t.Resources.Limits = &shoalpb.ResourceSet{}
	}
	if t.Resources.Reservations == nil {
		t.Resources.Reservations = &shoalpb.ResourceSet{}
	}
	if t.Restart == nil {
		t.Restart = &shoalpb.RestartPolicy{}
	}
	if t.Placement == nil {
		t.Placement = &shoalpb.Placement{}
	}
}

// Replace returns a copy of svc whose spec is spec: the current spec joins
// the kept earlier ones (newest first, at most MaxHistory), spec_version
// increases, and when the task spec changed a rollout starts in state
// (UPDATING or ROLLBACK_STARTED), moving away from the current version.
func Replace(svc *shoalpb.Service, spec *shoalpb.ServiceSpec, state shoalpb.UpdateState, now time.Time) *shoalpb.Service {
	upd := proto.Clone(svc).(*shoalpb.Service)
	at := timestamppb.New(now)
	upd.PreviousSpecs = append([]*shoalpb.VersionedSpec{{Version: svc.GetSpecVersion(), Spec: svc.GetSpec(), ReplacedAt: at}}, upd.PreviousSpecs...)
	if len(upd.PreviousSpecs) > MaxHistory {
		upd.PreviousSpecs = upd.PreviousSpecs[:MaxHistory]
	}
	upd.Spec = proto.Clone(spec).(*shoalpb.ServiceSpec)
	upd.SpecVersion++
	if upd.Meta == nil {
		upd.Meta = &shoalpb.Meta{}
	}
	upd.Meta.UpdatedAt = at
	if !proto.Equal(spec.GetTask(), svc.GetSpec().GetTask()) {
		upd.UpdateStatus = &shoalpb.UpdateStatus{
			State:       state,
			StartedAt:   at,
			FromVersion: svc.GetSpecVersion(),
			ToVersion:   upd.SpecVersion,
		}
	}
	return upd
}

// Kept returns the earlier spec of svc with the given version, or nil.
func Kept(svc *shoalpb.Service, version uint64) *shoalpb.ServiceSpec {
	for _, v := range svc.GetPreviousSpecs() {
		if v.GetVersion() == version {
			return v.GetSpec()
		}
	}
	return nil
}

// Rollback returns a copy of svc back on its kept spec of version toVersion
// (0: the newest kept one) in state ROLLBACK_STARTED with message, or an
// error naming the versions that can be chosen.
func Rollback(svc *shoalpb.Service, toVersion uint64, message string, now time.Time) (*shoalpb.Service, error) {
	kept := svc.GetPreviousSpecs()
	if len(kept) == 0 {
		return nil, fmt.Errorf("service %s has no earlier spec to roll back to", svc.GetSpec().GetName())
	}
	if toVersion == 0 {
		toVersion = kept[0].GetVersion()
	}
	spec := Kept(svc, toVersion)
	if spec == nil {
		versions := make([]string, len(kept))
		for i, v := range kept {
			versions[i] = fmt.Sprint(v.GetVersion())
		}
		return nil, fmt.Errorf("--to-version %d: service %s keeps versions %s (the current one is %d)", toVersion, svc.GetSpec().GetName(), strings.Join(versions, ", "), svc.GetSpecVersion())
	}
	upd := Replace(svc, spec, shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, now)
	if upd.UpdateStatus == nil || upd.UpdateStatus.State != shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED {
		// The task spec is the same: nothing to roll, the rollback is done.
		upd.UpdateStatus = &shoalpb.UpdateStatus{
			State:       shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED,
			StartedAt:   timestamppb.New(now),
			CompletedAt: timestamppb.New(now),
			FromVersion: svc.GetSpecVersion(),
			ToVersion:   upd.SpecVersion,
		}
	}
	upd.UpdateStatus.Message = message
	return upd, nil
}

// RollingBack reports whether svc's rollout is a rollback.
func RollingBack(svc *shoalpb.Service) bool {
	switch svc.GetUpdateStatus().GetState() {
	case shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED,
		shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED,
		shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED:
		return true
	}
	return false
}

// RolloutConfig is the config svc's current rollout runs under: its
// update_config, or during a rollback the rollback_config of the spec it
// rolls back from (the current one's when that spec is no longer kept).
// Missing configs are the defaults.
func RolloutConfig(svc *shoalpb.Service) *shoalpb.UpdateConfig {
	if !RollingBack(svc) {
		if c := svc.GetSpec().GetUpdateConfig(); c != nil {
			return c
		}
		return DefaultUpdateConfig()
	}
	if from := Kept(svc, svc.GetUpdateStatus().GetFromVersion()); from.GetRollbackConfig() != nil {
		return from.GetRollbackConfig()
	}
	if c := svc.GetSpec().GetRollbackConfig(); c != nil {
		return c
	}
	return DefaultUpdateConfig()
}

// TaskName is how users see a task: <service>.<slot>.<id>, or
// <service>.<node-id>.<id> for a global service's task (slot 0).
func TaskName(t *shoalpb.Task) string {
	if t.GetSlot() == 0 {
		return fmt.Sprintf("%s.%s.%s", t.GetServiceName(), t.GetNodeId(), t.GetId())
	}
	return fmt.Sprintf("%s.%d.%s", t.GetServiceName(), t.GetSlot(), t.GetId())
}
