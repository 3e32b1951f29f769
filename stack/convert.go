package stack

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	shoalpb "shoal/proto"
)

// maxServiceName is the longest service name the control API accepts.
const maxServiceName = 63

// serviceKeys are the service keys Convert honours (see unsupportedKeys).
// name is the service's key in the file; extends and label_file are
// resolved by the loader, env_file too (into environment). Priority orders
// the networks. create_host_path is compose's default for a short-syntax
// bind, not something the user wrote: shoal never creates a bind source.
var serviceKeys = newKeySet(
	"name", "image", "command", "entrypoint", "environment", "env_file", "labels", "label_file", "extends",
	"working_dir", "user", "hostname", "stop_signal", "stop_grace_period",
	"ports.name", "ports.mode", "ports.target", "ports.published", "ports.protocol",
	"networks.*.aliases", "networks.*.use_service_name_alias", "networks.*.priority",
	"volumes.type", "volumes.source", "volumes.target", "volumes.read_only", "volumes.bind.create_host_path",
	"healthcheck.test", "healthcheck.interval", "healthcheck.timeout", "healthcheck.retries",
	"healthcheck.start_period", "healthcheck.disable",
	"depends_on.*.condition", "depends_on.*.required",
	"deploy.mode", "deploy.replicas", "deploy.labels", "deploy.endpoint_mode",
	"deploy.placement.constraints", "deploy.placement.preferences.spread", "deploy.placement.max_replicas_per_node",
	"deploy.resources.limits.cpus", "deploy.resources.limits.memory", "deploy.resources.limits.pids",
	"deploy.resources.reservations.cpus", "deploy.resources.reservations.memory",
	"deploy.restart_policy.condition", "deploy.restart_policy.delay",
	"deploy.restart_policy.max_attempts", "deploy.restart_policy.window",
	"deploy.update_config.parallelism", "deploy.update_config.delay", "deploy.update_config.failure_action",
	"deploy.update_config.monitor", "deploy.update_config.max_failure_ratio", "deploy.update_config.order",
	"deploy.rollback_config.parallelism", "deploy.rollback_config.delay", "deploy.rollback_config.failure_action",
	"deploy.rollback_config.monitor", "deploy.rollback_config.max_failure_ratio", "deploy.rollback_config.order",
)

// Convert maps a loaded project onto the request that deploys it as stack
// name. Each warning is one line naming the keys of one service, network
// or volume that shoal does not honour. Services and networks come out
// sorted by name, so the same files give the same request.
func Convert(p *types.Project, name string) (*shoalpb.DeployStackRequest, []string, error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	if err := refuseSecretsAndConfigs(p); err != nil {
		return nil, nil, err
	}
	req := &shoalpb.DeployStackRequest{Stack: name}
	var warnings []string
	used := map[string]bool{}
	for _, svcName := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[svcName]
		spec, ignored, err := convertService(p, name, svc)
		if err != nil {
			return nil, nil, err
		}
		for net := range svc.Networks {
			used[net] = true
		}
		req.Services = append(req.Services, spec)
		warnings = appendWarning(warnings, "service", svcName, ignored)
	}
	nets, netWarnings, err := convertNetworks(p, name, used)
	if err != nil {
		return nil, nil, err
	}
	req.Networks = nets
	warnings = append(warnings, netWarnings...)
	for _, volName := range slices.Sorted(maps.Keys(p.Volumes)) {
		warnings = appendWarning(warnings, "volume", volName, unsupportedKeys(p.Volumes[volName], newKeySet("name", "external")))
	}
	return req, warnings, nil
}

func appendWarning(warnings []string, kind, name string, keys []string) []string {
	if len(keys) == 0 {
		return warnings
	}
	return append(warnings, fmt.Sprintf("ignoring unsupported keys for %s %s: %s", kind, name, strings.Join(keys, ", ")))
}

// refuseSecretsAndConfigs fails on the first secret or config, service
// level first: shoal has no secret or config store yet.
func refuseSecretsAndConfigs(p *types.Project) error {
	const fix = "remove them and pass the values another way (an environment variable or a bind mount)"
	for _, svcName := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[svcName]
		if len(svc.Secrets) > 0 {
			var names []string
			for _, s := range svc.Secrets {
				names = append(names, s.Source)
			}
			return fieldErr("services."+svcName+".secrets", "shoal does not support secrets yet (%s); %s", strings.Join(names, ", "), fix)
		}
		if len(svc.Configs) > 0 {
			var names []string
			for _, c := range svc.Configs {
				names = append(names, c.Source)
			}
			return fieldErr("services."+svcName+".configs", "shoal does not support configs yet (%s); %s", strings.Join(names, ", "), fix)
		}
	}
	if len(p.Secrets) > 0 {
		return fieldErr("secrets", "shoal does not support secrets yet (%s); %s", strings.Join(slices.Sorted(maps.Keys(p.Secrets)), ", "), fix)
	}
	if len(p.Configs) > 0 {
		return fieldErr("configs", "shoal does not support configs yet (%s); %s", strings.Join(slices.Sorted(maps.Keys(p.Configs)), ", "), fix)
	}
	return nil
}

// convertService maps one compose service; ignored are the keys it set
// that shoal does not honour.
func convertService(p *types.Project, stack string, svc types.ServiceConfig) (*shoalpb.ServiceSpec, []string, error) {
	path := "services." + svc.Name
	full := stack + "_" + svc.Name
	if len(full) > maxServiceName {
		return nil, nil, fieldErr(path, "the service would be named %q, longer than %d characters; use a shorter stack or service name", full, maxServiceName)
	}
	if svc.Image == "" {
		if svc.Build != nil {
			return nil, nil, fieldErr(path+".image", "missing, and shoal does not build images (build is set): build the image, load it with `shoal image load`, and name it in image")
		}
		return nil, nil, fieldErr(path+".image", "missing; name the image the service runs")
	}
	container, err := convertContainer(p, stack, path, svc)
	if err != nil {
		return nil, nil, err
	}
	ports, err := convertPorts(path, svc.Ports)
	if err != nil {
		return nil, nil, err
	}
	spec := &shoalpb.ServiceSpec{
		Name:   full,
		Labels: withStackLabel(nil, stack),
		Task: &shoalpb.TaskSpec{
			Container: container,
			Ports:     ports,
			Networks:  convertAttachments(p, svc),
		},
	}
	if err := convertDeploy(path, stack, svc.Deploy, spec); err != nil {
		return nil, nil, err
	}
	ignored := unsupportedKeys(svc, serviceKeys)
	for _, dep := range slices.Sorted(maps.Keys(svc.DependsOn)) {
		d := svc.DependsOn[dep]
		cond, ok := dependencyConditions[d.Condition]
		if !ok {
			return nil, nil, fieldErr(path+".depends_on."+dep+".condition", "%q is not one of service_started, service_healthy, service_completed_successfully", d.Condition)
		}
		spec.DependsOn = append(spec.DependsOn, &shoalpb.ServiceDependency{Service: stack + "_" + dep, Condition: cond})
		if !d.Required {
			ignored = append(ignored, "depends_on."+dep+".required")
		}
	}
	slices.Sort(ignored)
	return spec, ignored, nil
}

var dependencyConditions = map[string]shoalpb.DependencyCondition{
	types.ServiceConditionStarted:               shoalpb.DependencyCondition_DEPENDENCY_CONDITION_STARTED,
	types.ServiceConditionHealthy:               shoalpb.DependencyCondition_DEPENDENCY_CONDITION_HEALTHY,
	types.ServiceConditionCompletedSuccessfully: shoalpb.DependencyCondition_DEPENDENCY_CONDITION_COMPLETED,
}

// convertAttachments puts the service on its networks, highest priority
// first: each by its full name, reachable there by its short name (as in
// Docker) and its declared aliases.
func convertAttachments(p *types.Project, svc types.ServiceConfig) []*shoalpb.NetworkAttachmentConfig {
	var atts []*shoalpb.NetworkAttachmentConfig
	for _, net := range svc.NetworksByPriority() {
		cfg := svc.Networks[net]
		att := &shoalpb.NetworkAttachmentConfig{Target: p.Networks[net].Name}
		if cfg.ServiceNameAliasEnabled() {
			att.Aliases = append(att.Aliases, svc.Name)
		}
		if cfg != nil {
			att.Aliases = append(att.Aliases, cfg.Aliases...)
		}
		atts = append(atts, att)
	}
	return atts
}

// withStackLabel returns a copy of labels with the stack's label added.
func withStackLabel(labels map[string]string, stack string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[Label] = stack
	return out
}
