package stack

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	shoalpb "shoal/proto"
)

// convertContainer maps what runs in each task. As in Docker, entrypoint
// replaces the image's entrypoint (command) and command its arguments
// (args).
func convertContainer(p *types.Project, stack, path string, svc types.ServiceConfig) (*shoalpb.ContainerSpec, error) {
	c := &shoalpb.ContainerSpec{
		Image:      svc.Image,
		Command:    svc.Entrypoint,
		Args:       svc.Command,
		Env:        convertEnv(svc.Environment),
		Workdir:    svc.WorkingDir,
		User:       svc.User,
		Hostname:   svc.Hostname,
		Labels:     withStackLabel(svc.Labels, stack),
		StopSignal: svc.StopSignal,
	}
	if svc.StopGracePeriod != nil {
		c.StopGracePeriodMs = ms(*svc.StopGracePeriod)
	}
	for i, v := range svc.Volumes {
		m, err := convertMount(p, fmt.Sprintf("%s.volumes[%d]", path, i), v)
		if err != nil {
			return nil, err
		}
		c.Mounts = append(c.Mounts, m)
	}
	c.Healthcheck = convertHealthcheck(svc.HealthCheck)
	return c, nil
}

// convertEnv gives the environment as sorted KEY=VALUE entries; a variable
// listed without a value and not set in the loader's environment is left
// out, as compose does.
func convertEnv(env types.MappingWithEquals) []string {
	var out []string
	for k, v := range env {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	slices.Sort(out)
	return out
}

func convertMount(p *types.Project, path string, v types.ServiceVolumeConfig) (*shoalpb.Mount, error) {
	m := &shoalpb.Mount{Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
	switch v.Type {
	case types.VolumeTypeVolume:
		if v.Source == "" {
			return nil, fieldErr(path, "an anonymous volume at %s: shoal volumes have names; declare one under the top-level volumes and mount it as NAME:%s", v.Target, v.Target)
		}
		m.Type = shoalpb.MountType_MOUNT_TYPE_VOLUME
		m.Source = p.Volumes[v.Source].Name
	case types.VolumeTypeBind:
		m.Type = shoalpb.MountType_MOUNT_TYPE_BIND
	case types.VolumeTypeTmpfs:
		m.Type = shoalpb.MountType_MOUNT_TYPE_TMPFS
	default:
		return nil, fieldErr(path+".type", "%q is not one of volume, bind, tmpfs", v.Type)
	}
	return m, nil
}

// convertHealthcheck maps a check; unset timings stay 0 for the server's
// defaults, and disable turns the image's check off.
func convertHealthcheck(h *types.HealthCheckConfig) *shoalpb.HealthCheck {
	if h == nil {
		return nil
	}
	if h.Disable {
		return &shoalpb.HealthCheck{Test: []string{"NONE"}}
	}
	hc := &shoalpb.HealthCheck{Test: h.Test}
	if h.Interval != nil {
		hc.IntervalMs = ms(*h.Interval)
	}
	if h.Timeout != nil {
		hc.TimeoutMs = ms(*h.Timeout)
	}
	if h.StartPeriod != nil {
		hc.StartPeriodMs = ms(*h.StartPeriod)
	}
	if h.Retries != nil {
		hc.Retries = uint32(min(*h.Retries, 1<<32-1))
	}
	return hc
}

// convertPorts maps short and long port syntax (compose-go expands a short
// range such as "8000-8001:80-81" into one port each).
func convertPorts(path string, ports []types.ServicePortConfig) ([]*shoalpb.PortConfig, error) {
	var out []*shoalpb.PortConfig
	for i, p := range ports {
		at := fmt.Sprintf("%s.ports[%d]", path, i)
		if p.HostIP != "" {
			return nil, fieldErr(at+".host_ip", "%q: shoal publishes a port on every address of a node; remove host_ip", p.HostIP)
		}
		pc := &shoalpb.PortConfig{Name: p.Name, Protocol: p.Protocol, TargetPort: p.Target}
		if pc.Protocol == "" {
			pc.Protocol = "tcp"
		}
		if pc.Protocol != "tcp" && pc.Protocol != "udp" {
			return nil, fieldErr(at+".protocol", "%q is not one of tcp, udp", p.Protocol)
		}
		switch p.Mode {
		case "", "ingress":
			pc.Mode = shoalpb.PublishMode_PUBLISH_MODE_INGRESS
		case "host":
			pc.Mode = shoalpb.PublishMode_PUBLISH_MODE_HOST
		default:
			return nil, fieldErr(at+".mode", "%q is not one of ingress, host", p.Mode)
		}
		if p.Published != "" {
			if strings.Contains(p.Published, "-") {
				return nil, fieldErr(at+".published", "the range %q is not supported; publish one port per entry", p.Published)
			}
			n, err := strconv.ParseUint(p.Published, 10, 16)
			if err != nil || n == 0 {
				return nil, fieldErr(at+".published", "%q is not a port from 1 to 65535", p.Published)
			}
			pc.PublishedPort = uint32(n)
		}
		out = append(out, pc)
	}
	return out, nil
}

func ms(d types.Duration) int64 { return time.Duration(d).Milliseconds() }
