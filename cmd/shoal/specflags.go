package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// specFlags are the service spec flags shared by `service create` and
// `service update`. Each parse function names the flag it failed on.
type specFlags struct {
	replicas                    uint64
	mode                        string
	maxConcurrent               uint64
	env, envFile, labels        []string
	containerLabels             []string
	constraints, placementPrefs []string
	maxPerNode                  uint64
	reserveCPU, reserveMemory   string
	limitCPU, limitMemory       string
	limitPids                   int64
	restartCondition            string
	restartDelay, restartWindow time.Duration
	restartMaxAttempts          uint64
	stopGrace                   time.Duration
	stopSignal                  string
	workdir, user, hostname     string
	publish, mounts             []string
	networks                    []string
	entrypoint                  string
	endpointMode                string
	health, readiness           checkFlags
	update, rollback            rolloutFlags
}

// registerScalars registers the flags that set one value; create and update share them.
func (f *specFlags) registerScalars(fs *pflag.FlagSet) {
	fs.Uint64Var(&f.replicas, "replicas", 1, "number of tasks (replicated services and jobs)")
	fs.Uint64Var(&f.maxConcurrent, "max-concurrent", 0, "jobs: tasks running at once (default: replicas)")
	fs.Uint64Var(&f.maxPerNode, "replicas-max-per-node", 0, "at most this many tasks of the service per node (0: no limit)")
	fs.StringVar(&f.reserveCPU, "reserve-cpu", "", "CPUs reserved per task, e.g. 0.5")
	fs.StringVar(&f.reserveMemory, "reserve-memory", "", "memory reserved per task, e.g. 256M or 1G")
	fs.StringVar(&f.limitCPU, "limit-cpu", "", "CPU limit per task, e.g. 1.5")
	fs.StringVar(&f.limitMemory, "limit-memory", "", "memory limit per task, e.g. 512M")
	fs.Int64Var(&f.limitPids, "limit-pids", 0, "process limit per task (0: none)")
	fs.StringVar(&f.restartCondition, "restart-condition", "any", "restart when a task ends: none, on-failure or any")
	fs.DurationVar(&f.restartDelay, "restart-delay", 5*time.Second, "wait between a task ending and its replacement")
	fs.Uint64Var(&f.restartMaxAttempts, "restart-max-attempts", 0, "give up after this many restarts in the window (0: never)")
	fs.DurationVar(&f.restartWindow, "restart-window", 0, "window for --restart-max-attempts (0: the whole life of the service)")
	fs.DurationVar(&f.stopGrace, "stop-grace-period", 10*time.Second, "time between the stop signal and SIGKILL")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops a task (default SIGTERM)")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory of the task")
	fs.StringVarP(&f.user, "user", "u", "", "user the task runs as: name or UID[:GID]")
	fs.StringVar(&f.hostname, "hostname", "", "task hostname (containers)")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint")
	fs.StringVar(&f.endpointMode, "endpoint-mode", "vip", "how the service's name resolves: vip (one virtual IP balanced over the ready tasks) or dnsrr (the ready tasks' addresses)")
	f.health.register(fs, "health", "liveness check")
	f.readiness.register(fs, "readiness", "readiness check")
	f.update.register(fs, "update")
	f.rollback.register(fs, "rollback")
}

// registerLists registers the create-only list flags (update has -add/-rm forms).
func (f *specFlags) registerLists(fs *pflag.FlagSet) {
	fs.StringVar(&f.mode, "mode", "replicated", "replicated, global, replicated-job or global-job")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE")
	fs.StringArrayVar(&f.envFile, "env-file", nil, "read environment variables from a file of KEY=VALUE lines")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "service label KEY=VALUE")
	fs.StringArrayVar(&f.containerLabels, "container-label", nil, "task label KEY=VALUE")
	fs.StringArrayVar(&f.constraints, "constraint", nil, "placement constraint, e.g. node.labels.zone==eu or node.role!=manager")
	fs.StringArrayVar(&f.placementPrefs, "placement-pref", nil, "placement preference spread=node.labels.KEY")
	fs.StringArrayVar(&f.networks, "network", nil, "join a network: NAME or name=NAME[,alias=ALIAS]... (repeat for several; the first is the primary one; default: the default network)")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port: published=P,target=T[,mode=ingress|host][,protocol=tcp|udp][,mesh=tcp|http][,proxy-protocol=v1|v2][,name=N] or P:T[/udp]")
	fs.StringArrayVar(&f.mounts, "mount", nil, "mount: type=bind|volume|tmpfs,source=S,target=T[,readonly]")
}

// applyScalars copies the scalar flags into spec: all of them on create, the
// ones given on the command line on update.
func (f *specFlags) applyScalars(spec *shoalpb.ServiceSpec, fs *pflag.FlagSet, create bool) error {
	set := func(name string) bool { return create || fs.Changed(name) }
	t := spec.Task
	c := t.Container
	if set("replicas") && (fs.Changed("replicas") || spec.Mode == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED || spec.Mode == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB) {
		spec.Replicas = f.replicas
	}
	if set("max-concurrent") {
		spec.MaxConcurrent = f.maxConcurrent
	}
	if set("replicas-max-per-node") {
		t.Placement.MaxReplicasPerNode = f.maxPerNode
	}
	var err error
	for _, r := range []struct {
		flag  string
		value string
		dst   *int64
		parse func(string, string) (int64, error)
	}{
		{"reserve-cpu", f.reserveCPU, &t.Resources.Reservations.NanoCpus, parseCPU},
		{"reserve-memory", f.reserveMemory, &t.Resources.Reservations.MemoryBytes, parseBytes},
		{"limit-cpu", f.limitCPU, &t.Resources.Limits.NanoCpus, parseCPU},
		{"limit-memory", f.limitMemory, &t.Resources.Limits.MemoryBytes, parseBytes},
	} {
		if set(r.flag) {
			if *r.dst, err = r.parse("--"+r.flag, r.value); err != nil {
				return err
			}
		}
	}
	if set("limit-pids") {
		t.Resources.Limits.Pids = f.limitPids
	}
	if set("restart-condition") {
		if t.Restart.Condition, err = parseRestartCondition(f.restartCondition); err != nil {
			return err
		}
	}
	if set("restart-delay") {
		t.Restart.DelayMs = restartDelayMs(f.restartDelay)
	}
	if set("restart-max-attempts") {
		t.Restart.MaxAttempts = f.restartMaxAttempts
	}
	if set("restart-window") {
		t.Restart.WindowMs = f.restartWindow.Milliseconds()
	}
	if set("stop-grace-period") {
		c.StopGracePeriodMs = f.stopGrace.Milliseconds()
	}
	if set("stop-signal") {
		c.StopSignal = f.stopSignal
	}
	if set("endpoint-mode") {
		switch f.endpointMode {
		case "vip":
			spec.Endpoint = nil
		case "dnsrr":
			spec.Endpoint = &shoalpb.EndpointSpec{Mode: shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR}
		default:
			return fmt.Errorf("--endpoint-mode %q: use vip or dnsrr", f.endpointMode)
		}
	}
	if set("workdir") {
		c.Workdir = f.workdir
	}
	if set("user") {
		c.User = f.user
	}
	if set("hostname") {
		c.Hostname = f.hostname
	}
	if set("entrypoint") {
		c.Command = strings.Fields(f.entrypoint)
	}
	if c.Healthcheck, err = f.health.apply(fs, c.Healthcheck); err != nil {
		return err
	}
	if c.Readiness, err = f.readiness.apply(fs, c.Readiness); err != nil {
		return err
	}
	if spec.UpdateConfig, err = f.update.apply(fs, spec.UpdateConfig); err != nil {
		return err
	}
	if spec.RollbackConfig, err = f.rollback.apply(fs, spec.RollbackConfig); err != nil {
		return err
	}
	return nil
}

// applyLists fills the create-only list flags into a new spec.
func (f *specFlags) applyLists(spec *shoalpb.ServiceSpec) error {
	t, c := spec.Task, spec.Task.Container
	var err error
	for _, file := range f.envFile {
		env, err := readEnvFile(file)
		if err != nil {
			return err
		}
		c.Env = append(c.Env, env...)
	}
	for _, e := range f.env {
		if _, _, err := kv("--env", e); err != nil {
			return err
		}
		if !strings.Contains(e, "=") {
			e += "=" + os.Getenv(e)
		}
		c.Env = append(c.Env, e)
	}
	if spec.Labels, err = labelMap("--label", f.labels); err != nil {
		return err
	}
	if c.Labels, err = labelMap("--container-label", f.containerLabels); err != nil {
		return err
	}
	t.Placement.Constraints = f.constraints
	for _, p := range f.placementPrefs {
		pref, err := parsePlacementPref(p)
		if err != nil {
			return err
		}
		t.Placement.Preferences = append(t.Placement.Preferences, pref)
	}
	for _, p := range f.publish {
		port, err := parsePublish(p)
		if err != nil {
			return err
		}
		t.Ports = append(t.Ports, port)
	}
	for _, n := range f.networks {
		att, err := parseNetwork("--network", n)
		if err != nil {
			return err
		}
		t.Networks = append(t.Networks, att)
	}
	for _, m := range f.mounts {
		mount, err := parseMount(m)
		if err != nil {
			return err
		}
		c.Mounts = append(c.Mounts, mount)
	}
	return nil
}

func parsePlacementPref(s string) (*shoalpb.PlacementPreference, error) {
	k, v, _ := strings.Cut(s, "=")
	if k != "spread" || v == "" {
		return nil, fmt.Errorf("--placement-pref %q: use spread=node.labels.KEY", s)
	}
	return &shoalpb.PlacementPreference{Spread: v}, nil
}

// newSpec returns a spec with every nested message present.
func newSpec() *shoalpb.ServiceSpec {
	spec := &shoalpb.ServiceSpec{}
	servicespec.Fill(spec)
	return spec
}

// kv splits KEY=VALUE; a bare KEY has an empty value.
func kv(flag, s string) (string, string, error) {
	k, v, _ := strings.Cut(s, "=")
	if k == "" {
		return "", "", fmt.Errorf("%s %q: use KEY=VALUE", flag, s)
	}
	return k, v, nil
}

func labelMap(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range list {
		k, v, err := kv(flag, s)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// readEnvFile reads KEY=VALUE lines; blank lines and # comments are skipped.
func readEnvFile(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer file.Close()
	var out []string
	sc := bufio.NewScanner(file)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if k, _, _ := strings.Cut(text, "="); k == "" {
			return nil, fmt.Errorf("--env-file %s line %d: %q has no variable name; use KEY=VALUE", path, line, text)
		}
		if !strings.Contains(text, "=") {
			text += "=" + os.Getenv(text)
		}
		out = append(out, text)
	}
	return out, sc.Err()
}

// parseCPU turns "1.5" into nano CPUs.
func parseCPU(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%s %q: give a number of CPUs, e.g. 0.5 or 2", flag, s)
	}
	return int64(f * 1e9), nil
}

// parseBytes accepts 1024, 512k, 256M, 1.5G, 1GiB, 2g (binary units, like Docker).
func parseBytes(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRight(s, "bBiI")
	mult := int64(1)
	if n := len(num); n > 0 {
		switch strings.ToLower(num[n-1:]) {
		case "k":
			mult, num = 1<<10, num[:n-1]
		case "m":
			mult, num = 1<<20, num[:n-1]
		case "g":
			mult, num = 1<<30, num[:n-1]
		case "t":
			mult, num = 1<<40, num[:n-1]
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*float64(mult) > math.MaxInt64 {
		return 0, fmt.Errorf("%s %q: give a size such as 256M, 1.5G or 1073741824", flag, s)
	}
	return int64(f * float64(mult)), nil
}

func parseRestartCondition(s string) (shoalpb.RestartCondition, error) {
	switch s {
	case "any":
		return shoalpb.RestartCondition_RESTART_CONDITION_ANY, nil
	case "on-failure":
		return shoalpb.RestartCondition_RESTART_CONDITION_ON_FAILURE, nil
	case "none":
		return shoalpb.RestartCondition_RESTART_CONDITION_NONE, nil
	}
	return 0, fmt.Errorf("--restart-condition %q: use none, on-failure or any", s)
}

func parseMode(s string) (shoalpb.ServiceMode, error) {
	switch s {
	case "replicated":
		return shoalpb.ServiceMode_SERVICE_MODE_REPLICATED, nil
	case "global":
		return shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, nil
	case "replicated-job":
		return shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB, nil
	case "global-job":
		return shoalpb.ServiceMode_SERVICE_MODE_GLOBAL_JOB, nil
	}
	return 0, fmt.Errorf("--mode %q: use replicated, global, replicated-job or global-job", s)
}

// parsePublish accepts the long form
// published=P,target=T,mode=ingress|host,protocol=tcp|udp,mesh=tcp|http,proxy-protocol=v1|v2,name=N
// and the short form P:T[/udp]. Ports are published in ingress mode (the
// routing mesh, on every node) unless mode=host says otherwise.
func parsePublish(s string) (*shoalpb.PortConfig, error) {
	p := &shoalpb.PortConfig{Protocol: "tcp", Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS}
	bad := func(why string) error {
		return fmt.Errorf("--publish %q: %s; use published=8080,target=80[,mode=ingress|host][,protocol=tcp|udp][,mesh=tcp|http][,proxy-protocol=v1|v2] or 8080:80", s, why)
	}
	port := func(v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return 0, bad(fmt.Sprintf("%q is not a port number from 1 to 65535", v))
		}
		return uint32(n), nil
	}
	if !strings.Contains(s, "=") {
		spec, proto, _ := strings.Cut(s, "/")
		if proto != "" {
			p.Protocol = proto
		}
		pub, target, ok := strings.Cut(spec, ":")
		if !ok {
			pub, target = "", spec
		}
		var err error
		if pub != "" {
			if p.PublishedPort, err = port(pub); err != nil {
				return nil, err
			}
		}
		if p.TargetPort, err = port(target); err != nil {
			return nil, err
		}
		return p, nil
	}
	for _, field := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(field, "=")
		var err error
		switch k {
		case "published":
			p.PublishedPort, err = port(v)
		case "target":
			p.TargetPort, err = port(v)
		case "protocol":
			p.Protocol = v
		case "mode":
			switch v {
			case "host":
				p.Mode = shoalpb.PublishMode_PUBLISH_MODE_HOST
			case "ingress":
				p.Mode = shoalpb.PublishMode_PUBLISH_MODE_INGRESS
			default:
				err = bad(fmt.Sprintf("mode %q is not host or ingress", v))
			}
		case "name":
			p.Name = v
		case "mesh":
			switch v {
			case "tcp":
				p.Mesh = shoalpb.MeshMode_MESH_MODE_TCP
			case "http":
				p.Mesh = shoalpb.MeshMode_MESH_MODE_HTTP
			default:
				err = bad(fmt.Sprintf("mesh %q is not tcp or http", v))
			}
		case "proxy-protocol":
			switch v {
			case "v1":
				p.ProxyProtocol = shoalpb.ProxyProtocol_PROXY_PROTOCOL_V1
			case "v2":
				p.ProxyProtocol = shoalpb.ProxyProtocol_PROXY_PROTOCOL_V2
			default:
				err = bad(fmt.Sprintf("proxy-protocol %q is not v1 or v2", v))
			}
		default:
			err = bad(fmt.Sprintf("unknown field %q", k))
		}
		if err != nil {
			return nil, err
		}
	}
	if p.TargetPort == 0 {
		return nil, bad("target is missing")
	}
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return nil, bad(fmt.Sprintf("protocol %q is not tcp or udp", p.Protocol))
	}
	return p, nil
}

// parseMount accepts type=bind|volume|tmpfs,source=S,target=T[,readonly].
func parseMount(s string) (*shoalpb.Mount, error) {
	m := &shoalpb.Mount{Type: shoalpb.MountType_MOUNT_TYPE_VOLUME}
	for _, field := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "type":
			switch v {
			case "bind":
				m.Type = shoalpb.MountType_MOUNT_TYPE_BIND
			case "volume":
				m.Type = shoalpb.MountType_MOUNT_TYPE_VOLUME
			case "tmpfs":
				m.Type = shoalpb.MountType_MOUNT_TYPE_TMPFS
			default:
				return nil, fmt.Errorf("--mount %q: type %q is not bind, volume or tmpfs", s, v)
			}
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			m.ReadOnly = v == "" || v == "true" || v == "1"
		default:
			return nil, fmt.Errorf("--mount %q: unknown field %q; use type=,source=,target=,readonly", s, k)
		}
	}
	if m.Target == "" {
		return nil, fmt.Errorf("--mount %q: target is missing", s)
	}
	return m, nil
}

// restartDelayMs stores an explicit zero delay as -1: 0 means "default (5s)".
func restartDelayMs(d time.Duration) int64 {
	if d == 0 {
		return -1
	}
	return d.Milliseconds()
}

// parseNetwork parses a --network value: NAME, or name=NAME[,alias=ALIAS]...
// (NAME,alias=ALIAS also works).
func parseNetwork(flag, s string) (*shoalpb.NetworkAttachmentConfig, error) {
	att := &shoalpb.NetworkAttachmentConfig{}
	for i, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		switch {
		case !ok && i == 0:
			att.Target = part
		case k == "name" || k == "target":
			att.Target = v
		case k == "alias" && v != "":
			att.Aliases = append(att.Aliases, v)
		default:
			return nil, fmt.Errorf("%s %q: unknown part %q; use NAME or name=NAME[,alias=ALIAS]", flag, s, part)
		}
	}
	if att.Target == "" {
		return nil, fmt.Errorf("%s %q: no network name; use NAME or name=NAME[,alias=ALIAS]", flag, s)
	}
	return att, nil
}
