package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// checkFlags are the flags of one check: --health-* (liveness) or
// --readiness-*. Create and update share them; only the flags given change
// the spec.
type checkFlags struct {
	prefix      string // "health" or "readiness"
	cmd, http   string
	tcp         string
	interval    time.Duration
	timeout     time.Duration
	startPeriod time.Duration
	retries     uint32
	disable     bool // --no-healthcheck / --no-readiness
}

func (f *checkFlags) register(fs *pflag.FlagSet, prefix, what string) {
	f.prefix = prefix
	fs.StringVar(&f.cmd, prefix+"-cmd", "", what+": shell command run inside the task; exit code 0 passes")
	fs.StringVar(&f.http, prefix+"-http", "", what+": HTTP GET of PATH:PORT on the task, e.g. /healthz:8080; 2xx and 3xx pass")
	fs.StringVar(&f.tcp, prefix+"-tcp", "", what+": TCP connect to PORT on the task")
	fs.DurationVar(&f.interval, prefix+"-interval", 0, what+": time between probes (default 30s)")
	fs.DurationVar(&f.timeout, prefix+"-timeout", 0, what+": time a probe may take (default 30s)")
	fs.Uint32Var(&f.retries, prefix+"-retries", 0, what+": failures in a row that count (default 3)")
	fs.DurationVar(&f.startPeriod, prefix+"-start-period", 0, what+": failures in this time after the start do not count (default 0s)")
	if prefix == "health" {
		fs.BoolVar(&f.disable, "no-healthcheck", false, "disable the liveness check, the image's HEALTHCHECK included")
	} else {
		fs.BoolVar(&f.disable, "no-readiness", false, "remove the readiness check (the task is ready once healthy, or once running)")
	}
}

// disableFlag is the name of the flag that removes the check.
func (f *checkFlags) disableFlag() string {
	if f.prefix == "health" {
		return "no-healthcheck"
	}
	return "no-readiness"
}

// apply returns cur with the flags given on the command line applied; cur
// itself is not modified. A new service starts from nil.
func (f *checkFlags) apply(fs *pflag.FlagSet, cur *shoalpb.HealthCheck) (*shoalpb.HealthCheck, error) {
	given := func(name string) bool { return fs.Changed(f.prefix + "-" + name) }
	var kinds, all []string
	for _, name := range []string{"cmd", "http", "tcp"} {
		if given(name) {
			kinds = append(kinds, "--"+f.prefix+"-"+name)
		}
	}
	all = append(all, kinds...)
	for _, name := range []string{"interval", "timeout", "retries", "start-period"} {
		if given(name) {
			all = append(all, "--"+f.prefix+"-"+name)
		}
	}
	if fs.Changed(f.disableFlag()) && f.disable {
		if len(all) > 0 {
			return nil, fmt.Errorf("--%s cannot be combined with %s; give one or the other", f.disableFlag(), strings.Join(all, ", "))
		}
		if f.prefix == "health" {
			return &shoalpb.HealthCheck{Test: []string{"NONE"}}, nil
		}
		return nil, nil
	}
	if len(all) == 0 {
		return cur, nil
	}
	if len(kinds) > 1 {
		return nil, fmt.Errorf("%s: give only one kind of probe", strings.Join(kinds, ", "))
	}
	hc := &shoalpb.HealthCheck{}
	if cur != nil {
		hc = proto.Clone(cur).(*shoalpb.HealthCheck)
	}
	if len(kinds) == 0 && len(hc.Test) > 0 && hc.Test[0] == "NONE" {
		return nil, fmt.Errorf("%s: the service's check is disabled (--no-healthcheck); give --health-cmd, --health-http or --health-tcp too", strings.Join(all, ", "))
	}
	switch {
	case given("cmd"):
		if strings.TrimSpace(f.cmd) == "" {
			return nil, fmt.Errorf("--%s-cmd: give a command, e.g. --%s-cmd \"curl -f http://localhost/ || exit 1\"", f.prefix, f.prefix)
		}
		hc.Test, hc.HttpPath, hc.HttpPort, hc.TcpPort = []string{"CMD-SHELL", f.cmd}, "", 0, 0
	case given("http"):
		path, port, err := parseHTTPProbe("--"+f.prefix+"-http", f.http)
		if err != nil {
			return nil, err
		}
		hc.Test, hc.HttpPath, hc.HttpPort, hc.TcpPort = nil, path, port, 0
	case given("tcp"):
		port, err := parseProbePort("--"+f.prefix+"-tcp", f.tcp, f.tcp)
		if err != nil {
			return nil, err
		}
		hc.Test, hc.HttpPath, hc.HttpPort, hc.TcpPort = nil, "", 0, port
	}
	if given("interval") {
		hc.IntervalMs = f.interval.Milliseconds()
	}
	if given("timeout") {
		hc.TimeoutMs = f.timeout.Milliseconds()
	}
	if given("retries") {
		hc.Retries = f.retries
	}
	if given("start-period") {
		hc.StartPeriodMs = f.startPeriod.Milliseconds()
	}
	return hc, nil
}

// parseHTTPProbe reads PATH:PORT, e.g. /healthz:8080.
func parseHTTPProbe(flag, s string) (string, uint32, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%s %q: give PATH:PORT, e.g. /healthz:8080", flag, s)
	}
	path := s[:i]
	if !strings.HasPrefix(path, "/") {
		return "", 0, fmt.Errorf("%s %q: the path must start with \"/\"; give PATH:PORT, e.g. /healthz:8080", flag, s)
	}
	port, err := parseProbePort(flag, s, s[i+1:])
	return path, port, err
}

func parseProbePort(flag, arg, s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q: %q is not a port number from 1 to 65535", flag, arg, s)
	}
	return uint32(n), nil
}
