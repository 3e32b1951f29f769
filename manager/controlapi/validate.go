package controlapi

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
	"shoal/scheduler"
	"shoal/worker/runtime"
)

// MaxReplicas is the most tasks a service may ask for.
const MaxReplicas = 1_000_000

var serviceName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// MinMemoryLimit is the smallest memory limit a task may have: below it
// runc's own start-up in the task's cgroup is killed, and the task could
// never run (Docker refuses the same).
const MinMemoryLimit = 6 << 20

// invalid is a rejected field: the message names it and says what to do.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// validateSpec checks everything in a service spec that can be checked
// before it is stored.
func validateSpec(spec *shoalpb.ServiceSpec) error {
	if spec == nil {
		return invalid("spec", "missing")
	}
	if !serviceName.MatchString(spec.Name) {
		return invalid("--name", "%q is not a valid service name: use 1–63 letters, digits, '_', '.' or '-', starting with a letter or digit", spec.Name)
	}
	switch spec.Mode {
	case shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
		if spec.Replicas != 0 {
			return invalid("--replicas", "a global service runs one task on every eligible node; remove --replicas or use --mode replicated")
		}
	case shoalpb.ServiceMode_SERVICE_MODE_REPLICATED, shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB:
		if spec.Replicas > MaxReplicas {
			return invalid("--replicas", "%d is more than the limit of %d", spec.Replicas, MaxReplicas)
		}
	default:
		return invalid("--mode", "unknown mode %d", spec.Mode)
	}
	if spec.MaxConcurrent != 0 && spec.Mode != shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB && spec.Mode != shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB {
		return invalid("--max-concurrent", "only jobs (--mode replicated-job or global-job) take it")
	}
	if err := validateRollout(spec); err != nil {
		return err
	}
	if err := validateDependsOn(spec); err != nil {
		return err
	}
	return validateTask(spec.Task)
}

func validateTask(t *shoalpb.TaskSpec) error {
	c := t.GetContainer()
	if c.GetImage() == "" {
		return invalid("image", "missing; give the image after the flags: shoal service create [flags] IMAGE [COMMAND] [ARG...]")
	}
	for _, kv := range c.GetEnv() {
		if k, _, _ := strings.Cut(kv, "="); k == "" {
			return invalid("--env", "%q has no variable name; use KEY=VALUE", kv)
		}
	}
	if c.GetWorkdir() != "" && !path.IsAbs(c.GetWorkdir()) {
		return invalid("--workdir", "%q must be an absolute path", c.GetWorkdir())
	}
	if c.GetStopSignal() != "" {
		if _, err := runtime.ParseSignal(c.GetStopSignal()); err != nil {
			return invalid("--stop-signal", "%v", err)
		}
	}
	if c.GetStopGracePeriodMs() < 0 {
		return invalid("--stop-grace-period", "must not be negative")
	}
	if err := validateHealth(c); err != nil {
		return err
	}
	for _, m := range c.GetMounts() {
		if !path.IsAbs(m.GetTarget()) {
			return invalid("--mount", "target %q must be an absolute path", m.GetTarget())
		}
		if m.GetType() == shoalpb.MountType_MOUNT_TYPE_BIND && !path.IsAbs(m.GetSource()) {
			return invalid("--mount", "bind source %q must be an absolute path", m.GetSource())
		}
		if m.GetType() == shoalpb.MountType_MOUNT_TYPE_VOLUME && m.GetSource() == "" {
			return invalid("--mount", "a volume mount needs source=VOLUME-NAME")
		}
	}
	for _, rs := range []struct {
		flag string
		set  *shoalpb.ResourceSet
	}{{"--reserve", t.GetResources().GetReservations()}, {"--limit", t.GetResources().GetLimits()}} {
		if rs.set.GetNanoCpus() < 0 || rs.set.GetMemoryBytes() < 0 || rs.set.GetPids() < 0 {
			return invalid(rs.flag+"-cpu/-memory", "must not be negative")
		}
	}
	if l := t.GetResources().GetLimits().GetMemoryBytes(); l > 0 && l < MinMemoryLimit {
		return invalid("--limit-memory", "%d bytes is below the %d MiB a container needs to start; give it at least %dM", l, MinMemoryLimit>>20, MinMemoryLimit>>20)
	}
	if r, l := t.GetResources().GetReservations(), t.GetResources().GetLimits(); l.GetMemoryBytes() > 0 && r.GetMemoryBytes() > l.GetMemoryBytes() {
		return invalid("--reserve-memory", "reservation (%d bytes) exceeds --limit-memory (%d bytes)", r.GetMemoryBytes(), l.GetMemoryBytes())
	}
	rp := t.GetRestart()
	if rp.GetDelayMs() < -1 || rp.GetWindowMs() < 0 {
		return invalid("--restart-delay/--restart-window", "must not be negative")
	}
	if _, err := scheduler.ParseConstraints(t.GetPlacement().GetConstraints()); err != nil {
		return invalid("--constraint", "%v", err)
	}
	for _, p := range t.GetPlacement().GetPreferences() {
		if !strings.HasPrefix(p.GetSpread(), "node.labels.") || len(p.GetSpread()) == len("node.labels.") {
			return invalid("--placement-pref", "spread=%q: spread over a node label, e.g. spread=node.labels.zone", p.GetSpread())
		}
	}
	seen := map[string]bool{}
	for _, p := range t.GetPorts() {
		if p.GetTargetPort() == 0 || p.GetTargetPort() > 65535 || p.GetPublishedPort() > 65535 {
			return invalid("--publish", "target=%d published=%d: ports go from 1 to 65535", p.GetTargetPort(), p.GetPublishedPort())
		}
		if p.GetProtocol() != "tcp" && p.GetProtocol() != "udp" {
			return invalid("--publish", "protocol %q: use tcp or udp", p.GetProtocol())
		}
		if p.GetPublishedPort() != 0 {
			key := fmt.Sprintf("%d/%s", p.GetPublishedPort(), p.GetProtocol())
			if seen[key] {
				return invalid("--publish", "port %s is published twice", key)
			}
			seen[key] = true
		}
	}
	return nil
}
