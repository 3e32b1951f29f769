package stack

import (
	"fmt"
	"math"
	"strconv"

	"github.com/compose-spec/compose-go/v2/types"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
	"shoal/scheduler"
)

var modes = map[string]shoalpb.ServiceMode{
	"":               shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
	"replicated":     shoalpb.ServiceMode_SERVICE_MODE_REPLICATED,
	"global":         shoalpb.ServiceMode_SERVICE_MODE_GLOBAL,
	"replicated-job": shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB,
	"global-job":     shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB,
}

// convertDeploy maps the deploy section onto spec. Unset parts stay unset,
// so the control API fills its defaults.
func convertDeploy(path, stack string, d *types.DeployConfig, spec *shoalpb.ServiceSpec) error {
	spec.Replicas = 1
	if d == nil {
		return nil
	}
	path += ".deploy"
	mode, ok := modes[d.Mode]
	if !ok {
		return fieldErr(path+".mode", "%q is not one of replicated, global, replicated-job, global-job", d.Mode)
	}
	spec.Mode = mode
	global := mode == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL || mode == shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB
	switch {
	case global && d.Replicas != nil:
		return fieldErr(path+".replicas", "a %s service runs one task on every eligible node; remove replicas or use mode: replicated", d.Mode)
	case global:
		spec.Replicas = 0
	case d.Replicas != nil && *d.Replicas < 0:
		return fieldErr(path+".replicas", "%d is negative; give 0 or more", *d.Replicas)
	case d.Replicas != nil:
		spec.Replicas = uint64(*d.Replicas)
	}
	spec.Labels = withStackLabel(d.Labels, stack)
	switch d.EndpointMode {
	case "", "vip":
	case "dnsrr":
		spec.Endpoint = &shoalpb.EndpointSpec{Mode: shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR}
	default:
		return fieldErr(path+".endpoint_mode", "%q is not one of vip, dnsrr", d.EndpointMode)
	}
	var err error
	task := spec.Task
	if task.Placement, err = convertPlacement(path+".placement", d.Placement); err != nil {
		return err
	}
	task.Resources = convertResources(d.Resources)
	if task.Restart, err = convertRestart(path+".restart_policy", d.RestartPolicy); err != nil {
		return err
	}
	if spec.UpdateConfig, err = convertUpdateConfig(path+".update_config", d.UpdateConfig, true); err != nil {
		return err
	}
	spec.RollbackConfig, err = convertUpdateConfig(path+".rollback_config", d.RollbackConfig, false)
	return err
}

func convertPlacement(path string, pl types.Placement) (*shoalpb.Placement, error) {
	if len(pl.Constraints) == 0 && len(pl.Preferences) == 0 && pl.MaxReplicas == 0 {
		return nil, nil
	}
	out := &shoalpb.Placement{Constraints: pl.Constraints, MaxReplicasPerNode: pl.MaxReplicas}
	for i, c := range pl.Constraints {
		if _, err := scheduler.ParseConstraint(c); err != nil {
			return nil, fmt.Errorf("%s.constraints[%d]: %w", path, i, err)
		}
	}
	for i, p := range pl.Preferences {
		if err := scheduler.ValidateSpread(p.Spread); err != nil {
			return nil, fmt.Errorf("%s.preferences[%d].spread: %w", path, i, err)
		}
		out.Preferences = append(out.Preferences, &shoalpb.PlacementPreference{Spread: p.Spread})
	}
	return out, nil
}

// convertResources maps limits (cpus, memory, pids) and reservations (cpus,
// memory); devices and generic resources are reported as unsupported.
func convertResources(r types.Resources) *shoalpb.Resources {
	if r.Limits == nil && r.Reservations == nil {
		return nil
	}
	out := &shoalpb.Resources{}
	if l := r.Limits; l != nil {
		out.Limits = &shoalpb.ResourceSet{NanoCpus: nanoCPUs(l.NanoCPUs), MemoryBytes: int64(l.MemoryBytes), Pids: l.Pids}
	}
	if rs := r.Reservations; rs != nil {
		out.Reservations = &shoalpb.ResourceSet{NanoCpus: nanoCPUs(rs.NanoCPUs), MemoryBytes: int64(rs.MemoryBytes)}
	}
	return out
}

// nanoCPUs converts compose's float32 CPU count through its shortest
// decimal form, so "0.1" is 100000000 and not float32 noise.
func nanoCPUs(n types.NanoCPUs) int64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(n), 'g', -1, 32), 64)
	return int64(math.Round(f * 1e9))
}

var restartConditions = map[string]shoalpb.RestartCondition{
	"":           shoalpb.RestartCondition_RESTART_CONDITION_ANY,
	"any":        shoalpb.RestartCondition_RESTART_CONDITION_ANY,
	"on-failure": shoalpb.RestartCondition_RESTART_CONDITION_ON_FAILURE,
	"none":       shoalpb.RestartCondition_RESTART_CONDITION_NONE,
}

func convertRestart(path string, rp *types.RestartPolicy) (*shoalpb.RestartPolicy, error) {
	if rp == nil {
		return nil, nil
	}
	cond, ok := restartConditions[rp.Condition]
	if !ok {
		return nil, fieldErr(path+".condition", "%q is not one of none, on-failure, any", rp.Condition)
	}
	out := &shoalpb.RestartPolicy{Condition: cond}
	if rp.Delay != nil {
		// An explicit zero is stored as -1: 0 means the default delay.
		out.DelayMs = ms(*rp.Delay)
		if out.DelayMs == 0 {
			out.DelayMs = -1
		}
	}
	if rp.MaxAttempts != nil {
		out.MaxAttempts = *rp.MaxAttempts
	}
	if rp.Window != nil {
		out.WindowMs = ms(*rp.Window)
	}
	return out, nil
}

// convertUpdateConfig maps update_config (update true) or rollback_config
// over shoal's defaults, as Docker fills a partial config.
func convertUpdateConfig(path string, uc *types.UpdateConfig, update bool) (*shoalpb.UpdateConfig, error) {
	if uc == nil {
		return nil, nil
	}
	out := servicespec.DefaultUpdateConfig()
	if uc.Parallelism != nil {
		out.Parallelism = *uc.Parallelism
	}
	if uc.Delay != 0 {
		out.DelayMs = ms(uc.Delay)
	}
	if uc.Monitor != 0 {
		out.MonitorMs = ms(uc.Monitor)
	}
	out.MaxFailureRatio = uc.MaxFailureRatio
	if r := uc.MaxFailureRatio; r < 0 || r > 1 {
		return nil, fieldErr(path+".max_failure_ratio", "%g is not a fraction from 0 to 1", r)
	}
	switch uc.FailureAction {
	case "", "pause":
	case "continue":
		out.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_CONTINUE
	case "rollback":
		if !update {
			return nil, fieldErr(path+".failure_action", "a rollback cannot roll back; use pause or continue")
		}
		out.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK
	default:
		if !update {
			return nil, fieldErr(path+".failure_action", "%q is not one of pause, continue", uc.FailureAction)
		}
		return nil, fieldErr(path+".failure_action", "%q is not one of pause, continue, rollback", uc.FailureAction)
	}
	switch uc.Order {
	case "", "stop-first":
	case "start-first":
		out.Order = shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST
	default:
		return nil, fieldErr(path+".order", "%q is not one of stop-first, start-first", uc.Order)
	}
	return out, nil
}
