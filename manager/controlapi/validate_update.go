package controlapi

import (
	"math"
	"time"

	shoalpb "shoal/proto"
)

// validateRollout checks a spec's update_config and rollback_config (nil
// means the defaults). Errors name the CLI flag of the field.
func validateRollout(spec *shoalpb.ServiceSpec) error {
	if err := validateUpdateConfig("--update", spec.GetUpdateConfig()); err != nil {
		return err
	}
	rc := spec.GetRollbackConfig()
	if rc.GetCanary() != 0 || rc.GetAutoPromoteMs() != 0 {
		return invalid("rollback_config", "canary and auto_promote_ms are for updates only (--update-canary, --update-auto-promote); leave them unset")
	}
	if err := validateUpdateConfig("--rollback", rc); err != nil {
		return err
	}
	if rc.GetFailureAction() == shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK {
		return invalid("--rollback-failure-action", "a rollback cannot roll back; use pause or continue")
	}
	uc := spec.GetUpdateConfig()
	if uc.GetCanary() > 0 {
		if spec.GetMode() != shoalpb.ServiceMode_SERVICE_MODE_REPLICATED {
			return invalid("--update-canary", "only replicated services run canaries, not a %s service; remove it", ModeName(spec.GetMode()))
		}
		if uc.GetCanary() > spec.GetReplicas() {
			return invalid("--update-canary", "%d canaries is more than the service's %d replicas; give at most %d (0 turns canaries off)", uc.GetCanary(), spec.GetReplicas(), spec.GetReplicas())
		}
	}
	if uc.GetAutoPromoteMs() > 0 && uc.GetCanary() == 0 {
		return invalid("--update-auto-promote", "promotes canaries, and the update runs none; add --update-canary N or remove it")
	}
	return nil
}

// validateUpdateConfig checks one config; flag is "--update" or "--rollback".
func validateUpdateConfig(flag string, c *shoalpb.UpdateConfig) error {
	if c == nil {
		return nil
	}
	if c.GetParallelism() > MaxReplicas {
		return invalid(flag+"-parallelism", "%d is more than the limit of %d; 0 replaces all tasks at once", c.GetParallelism(), MaxReplicas)
	}
	for _, d := range []struct {
		flag string
		ms   int64
	}{{flag + "-delay", c.GetDelayMs()}, {flag + "-monitor", c.GetMonitorMs()}, {flag + "-auto-promote", c.GetAutoPromoteMs()}} {
		if d.ms < 0 {
			return invalid(d.flag, "%s must not be negative", time.Duration(d.ms)*time.Millisecond)
		}
	}
	if r := float64(c.GetMaxFailureRatio()); math.IsNaN(r) || r < 0 || r > 1 {
		return invalid(flag+"-max-failure-ratio", "%g: give a fraction from 0 to 1 (0.25 lets a quarter of the replacements fail)", r)
	}
	if _, ok := shoalpb.UpdateOrder_name[int32(c.GetOrder())]; !ok {
		return invalid(flag+"-order", "unknown order %d; use start-first or stop-first", c.GetOrder())
	}
	if _, ok := shoalpb.FailureAction_name[int32(c.GetFailureAction())]; !ok {
		return invalid(flag+"-failure-action", "unknown action %d; use pause, continue or rollback", c.GetFailureAction())
	}
	return nil
}
