package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// parseSpec parses args as `service create` flags into a new spec.
func parseSpec(t *testing.T, args ...string) (*shoalpb.ServiceSpec, error) {
	t.Helper()
	var f specFlags
	fs := pflag.NewFlagSet("create", pflag.ContinueOnError)
	f.registerScalars(fs)
	f.registerLists(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	spec := newSpec()
	if err := f.applyLists(spec); err != nil {
		return nil, err
	}
	return spec, f.applyScalars(spec, fs, true)
}

func sameSpec(t *testing.T, got, want *shoalpb.ServiceSpec) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("spec\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// Every service flag lands in its field of the spec.
func TestServiceFlagsFillTheSpec(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(envFile, []byte("# settings\nFROM_FILE=1\n\nDB=postgres://db\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := parseSpec(t,
		"--replicas", "4", "--replicas-max-per-node", "2",
		"--env-file", envFile, "--env", "LOG=debug",
		"--label", "team=web", "--container-label", "tier=front",
		"--constraint", "node.labels.zone==eu", "--placement-pref", "spread=node.labels.rack",
		"--reserve-cpu", "0.5", "--reserve-memory", "256M", "--limit-cpu", "1.5", "--limit-memory", "1G", "--limit-pids", "100",
		"--restart-condition", "on-failure", "--restart-delay", "2s", "--restart-max-attempts", "3", "--restart-window", "1m",
		"--stop-grace-period", "30s", "--stop-signal", "SIGINT",
		"--workdir", "/srv", "--user", "1000:1000", "--hostname", "web",
		"--publish", "published=8080,target=80,mesh=http", "--publish", "5353:53/udp", "--publish", "published=9000,target=90,mode=host,proxy-protocol=v2,name=admin",
		"--endpoint-mode", "dnsrr",
		"--mount", "type=bind,source=/etc/web,target=/etc/web,readonly", "--mount", "type=tmpfs,target=/tmp",
	)
	if err != nil {
		t.Fatal(err)
	}
	want := &shoalpb.ServiceSpec{
		Replicas: 4,
		Labels:   map[string]string{"team": "web"},
		Endpoint: &shoalpb.EndpointSpec{Mode: shoalpb.EndpointMode_ENDPOINT_MODE_DNSRR},
		Task: &shoalpb.TaskSpec{
			Container: &shoalpb.ContainerSpec{
				Env:               []string{"FROM_FILE=1", "DB=postgres://db", "LOG=debug"},
				Labels:            map[string]string{"tier": "front"},
				StopGracePeriodMs: 30_000, StopSignal: "SIGINT",
				Workdir: "/srv", User: "1000:1000", Hostname: "web",
				Mounts: []*shoalpb.Mount{
					{Type: shoalpb.MountType_MOUNT_TYPE_BIND, Source: "/etc/web", Target: "/etc/web", ReadOnly: true},
					{Type: shoalpb.MountType_MOUNT_TYPE_TMPFS, Target: "/tmp"},
				},
			},
			Resources: &shoalpb.Resources{
				Reservations: &shoalpb.ResourceSet{NanoCpus: 5e8, MemoryBytes: 256 << 20},
				Limits:       &shoalpb.ResourceSet{NanoCpus: 15e8, MemoryBytes: 1 << 30, Pids: 100},
			},
			Restart: &shoalpb.RestartPolicy{Condition: shoalpb.RestartCondition_RESTART_CONDITION_ON_FAILURE,
				DelayMs: 2000, MaxAttempts: 3, WindowMs: 60_000},
			Placement: &shoalpb.Placement{
				Constraints:        []string{"node.labels.zone==eu"},
				Preferences:        []*shoalpb.PlacementPreference{{Spread: "node.labels.rack"}},
				MaxReplicasPerNode: 2,
			},
			Ports: []*shoalpb.PortConfig{
				{Protocol: "tcp", PublishedPort: 8080, TargetPort: 80, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS, Mesh: shoalpb.MeshMode_MESH_MODE_HTTP},
				{Protocol: "udp", PublishedPort: 5353, TargetPort: 53, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS},
				{Name: "admin", Protocol: "tcp", PublishedPort: 9000, TargetPort: 90, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST, ProxyProtocol: shoalpb.ProxyProtocol_PROXY_PROTOCOL_V2},
			},
		},
	}
	sameSpec(t, spec, want)
}

// An update applies only the scalar flags given on its command line.
func TestServiceUpdateFlagsChangeOnlyWhatIsGiven(t *testing.T) {
	stored, err := parseSpec(t, "--replicas", "3", "--restart-delay", "2s", "--workdir", "/srv")
	if err != nil {
		t.Fatal(err)
	}
	var f specFlags
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	f.registerScalars(fs)
	if err := fs.Parse([]string{"--restart-window", "90s", "--limit-memory", "512M"}); err != nil {
		t.Fatal(err)
	}
	spec := proto.Clone(stored).(*shoalpb.ServiceSpec)
	if err := f.applyScalars(spec, fs, false); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(stored).(*shoalpb.ServiceSpec)
	want.Task.Restart.WindowMs = 90_000
	want.Task.Resources.Limits.MemoryBytes = 512 << 20
	sameSpec(t, spec, want)
}

// Every health and readiness flag lands in its field of the spec.
func TestHealthFlagsFillTheSpec(t *testing.T) {
	cases := []struct {
		args              []string
		health, readiness *shoalpb.HealthCheck
	}{
		{nil, nil, nil},
		{[]string{"--health-cmd", "curl -f http://localhost/ || exit 1", "--health-interval", "5s", "--health-timeout", "2s",
			"--health-retries", "4", "--health-start-period", "1m"},
			&shoalpb.HealthCheck{Test: []string{"CMD-SHELL", "curl -f http://localhost/ || exit 1"}, IntervalMs: 5000, TimeoutMs: 2000, Retries: 4, StartPeriodMs: 60_000}, nil},
		{[]string{"--health-http", "/healthz:8080"}, &shoalpb.HealthCheck{HttpPath: "/healthz", HttpPort: 8080}, nil},
		{[]string{"--health-tcp", "5432"}, &shoalpb.HealthCheck{TcpPort: 5432}, nil},
		{[]string{"--no-healthcheck"}, &shoalpb.HealthCheck{Test: []string{"NONE"}}, nil},
		{[]string{"--health-interval", "10s"}, &shoalpb.HealthCheck{IntervalMs: 10_000}, nil},
		{[]string{"--readiness-cmd", "test -f /tmp/ready", "--readiness-interval", "1s", "--readiness-timeout", "500ms",
			"--readiness-retries", "1", "--readiness-start-period", "3s"},
			nil, &shoalpb.HealthCheck{Test: []string{"CMD-SHELL", "test -f /tmp/ready"}, IntervalMs: 1000, TimeoutMs: 500, Retries: 1, StartPeriodMs: 3000}},
		{[]string{"--readiness-http", "/ready:80", "--health-tcp", "80"},
			&shoalpb.HealthCheck{TcpPort: 80}, &shoalpb.HealthCheck{HttpPath: "/ready", HttpPort: 80}},
		{[]string{"--readiness-tcp", "6379"}, nil, &shoalpb.HealthCheck{TcpPort: 6379}},
	}
	for _, c := range cases {
		spec, err := parseSpec(t, c.args...)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		got := spec.Task.Container
		if !proto.Equal(got.Healthcheck, c.health) || !proto.Equal(got.Readiness, c.readiness) {
			t.Fatalf("%q: healthcheck %v readiness %v, want %v and %v", c.args, got.Healthcheck, got.Readiness, c.health, c.readiness)
		}
	}
}

// Bad health flags are refused naming the flag.
func TestHealthFlagsRefuseBadInput(t *testing.T) {
	cases := []struct {
		args    []string
		errPart string
	}{
		{[]string{"--no-healthcheck", "--health-cmd", "true"}, "--no-healthcheck cannot be combined with --health-cmd"},
		{[]string{"--no-healthcheck", "--health-retries", "2"}, "--no-healthcheck cannot be combined with --health-retries"},
		{[]string{"--health-cmd", "true", "--health-tcp", "80"}, "--health-cmd, --health-tcp: give only one kind of probe"},
		{[]string{"--health-http", "healthz:80"}, `--health-http "healthz:80": the path must start with "/"`},
		{[]string{"--health-http", "/healthz"}, `--health-http "/healthz": give PATH:PORT`},
		{[]string{"--readiness-http", "/:99999"}, `"99999" is not a port number from 1 to 65535`},
		{[]string{"--health-tcp", "0"}, `--health-tcp "0": "0" is not a port number`},
		{[]string{"--readiness-tcp", "http"}, `--readiness-tcp "http"`},
		{[]string{"--health-cmd", ""}, "--health-cmd: give a command"},
	}
	for _, c := range cases {
		_, err := parseSpec(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Fatalf("%q: got %v, want an error containing %q", c.args, err, c.errPart)
		}
	}
}

// An update changes only the health and readiness flags given.
func TestHealthUpdateChangesOnlyWhatIsGiven(t *testing.T) {
	stored, err := parseSpec(t, "--health-cmd", "check", "--health-interval", "5s", "--health-retries", "2",
		"--readiness-http", "/ready:8080", "--readiness-interval", "1s")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		edit func(c *shoalpb.ContainerSpec)
	}{
		{[]string{"--replicas", "2"}, func(*shoalpb.ContainerSpec) {}},
		{[]string{"--health-timeout", "3s"}, func(c *shoalpb.ContainerSpec) { c.Healthcheck.TimeoutMs = 3000 }},
		{[]string{"--health-tcp", "80"}, func(c *shoalpb.ContainerSpec) { c.Healthcheck.Test, c.Healthcheck.TcpPort = nil, 80 }},
		{[]string{"--health-http", "/live:9000", "--health-start-period", "10s"}, func(c *shoalpb.ContainerSpec) {
			c.Healthcheck.Test, c.Healthcheck.HttpPath, c.Healthcheck.HttpPort, c.Healthcheck.StartPeriodMs = nil, "/live", 9000, 10_000
		}},
		{[]string{"--no-healthcheck"}, func(c *shoalpb.ContainerSpec) { c.Healthcheck = &shoalpb.HealthCheck{Test: []string{"NONE"}} }},
		{[]string{"--readiness-cmd", "ready", "--readiness-retries", "5"}, func(c *shoalpb.ContainerSpec) {
			c.Readiness.Test, c.Readiness.HttpPath, c.Readiness.HttpPort, c.Readiness.Retries = []string{"CMD-SHELL", "ready"}, "", 0, 5
		}},
		{[]string{"--no-readiness"}, func(c *shoalpb.ContainerSpec) { c.Readiness = nil }},
	}
	for _, c := range cases {
		var f specFlags
		fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
		f.registerScalars(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		spec := proto.Clone(stored).(*shoalpb.ServiceSpec)
		if err := f.applyScalars(spec, fs, false); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		want := proto.Clone(stored).(*shoalpb.ServiceSpec)
		if slices.Contains(c.args, "--replicas") {
			want.Replicas = 2
		}
		c.edit(want.Task.Container)
		sameSpec(t, spec, want)
	}
	// Timings alone cannot revive a disabled check.
	disabled, err := parseSpec(t, "--no-healthcheck")
	if err != nil {
		t.Fatal(err)
	}
	var f specFlags
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	f.registerScalars(fs)
	if err := fs.Parse([]string{"--health-interval", "1s"}); err != nil {
		t.Fatal(err)
	}
	if err := f.applyScalars(disabled, fs, false); err == nil || !strings.Contains(err.Error(), "the service's check is disabled") {
		t.Fatalf("--health-interval on a disabled check: %v", err)
	}
}
