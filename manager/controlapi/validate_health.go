package controlapi

import (
	"strings"

	shoalpb "shoal/proto"
)

// validateHealth checks a task's liveness check (--health-*) and readiness
// check (--readiness-*). Each names exactly one probe: a command, an HTTP
// GET or a TCP connect; the liveness check may instead give only timings,
// which then apply to the image's HEALTHCHECK, or be ["NONE"] to disable it.
func validateHealth(c *shoalpb.ContainerSpec) error {
	if err := validateCheck("--health", c.GetHealthcheck(), true); err != nil {
		return err
	}
	return validateCheck("--readiness", c.GetReadiness(), false)
}

func validateCheck(flag string, hc *shoalpb.HealthCheck, liveness bool) error {
	if hc == nil {
		return nil
	}
	kinds := 0
	if test := hc.GetTest(); len(test) > 0 {
		switch test[0] {
		case "NONE":
			if !liveness {
				return invalid(flag+"-cmd", "NONE only disables an image's liveness check; to remove the readiness check, give none (service update --no-readiness)")
			}
			if len(test) > 1 || hc.GetHttpPort() != 0 || hc.GetHttpPath() != "" || hc.GetTcpPort() != 0 ||
				hc.GetIntervalMs() != 0 || hc.GetTimeoutMs() != 0 || hc.GetRetries() != 0 || hc.GetStartPeriodMs() != 0 {
				return invalid("--no-healthcheck", "disables the check, so it cannot be combined with other --health-* flags; give one or the other")
			}
			return nil
		case "CMD":
			if len(test) < 2 || test[1] == "" {
				return invalid(flag+"-cmd", `test ["CMD", ...] names no program; give ["CMD", "program", "arg"...]`)
			}
		case "CMD-SHELL":
			if len(test) != 2 || strings.TrimSpace(test[1]) == "" {
				return invalid(flag+"-cmd", `test ["CMD-SHELL", ...] takes exactly one non-empty shell command, e.g. --health-cmd "curl -f http://localhost/ || exit 1"`)
			}
		default:
			return invalid(flag+"-cmd", `test %q: the first element must be "CMD", "CMD-SHELL" or "NONE"`, test)
		}
		kinds++
	}
	if hc.GetHttpPort() != 0 || hc.GetHttpPath() != "" {
		kinds++
		if hc.GetHttpPort() == 0 || hc.GetHttpPort() > 65535 {
			return invalid(flag+"-http", "port %d: give PATH:PORT with a port from 1 to 65535, e.g. /healthz:8080", hc.GetHttpPort())
		}
		if !strings.HasPrefix(hc.GetHttpPath(), "/") {
			return invalid(flag+"-http", "path %q must start with \"/\", e.g. /healthz:8080", hc.GetHttpPath())
		}
	}
	if hc.GetTcpPort() != 0 {
		kinds++
		if hc.GetTcpPort() > 65535 {
			return invalid(flag+"-tcp", "port %d: give a port from 1 to 65535", hc.GetTcpPort())
		}
	}
	switch {
	case kinds > 1:
		return invalid(flag, "give exactly one of %[1]s-cmd, %[1]s-http and %[1]s-tcp", flag)
	case kinds == 0 && !liveness:
		return invalid(flag, "the readiness check needs a probe: give --readiness-cmd, --readiness-http or --readiness-tcp")
	}
	for _, d := range []struct {
		name string
		ms   int64
	}{{"-interval", hc.GetIntervalMs()}, {"-timeout", hc.GetTimeoutMs()}, {"-start-period", hc.GetStartPeriodMs()}} {
		if d.ms < 0 {
			return invalid(flag+d.name, "%dms must not be negative (0 means the default)", d.ms)
		}
	}
	return nil
}
