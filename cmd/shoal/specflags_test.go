package main

import (
	"os"
	"path/filepath"
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
		"--publish", "published=8080,target=80", "--publish", "5353:53/udp",
		"--mount", "type=bind,source=/etc/web,target=/etc/web,readonly", "--mount", "type=tmpfs,target=/tmp",
	)
	if err != nil {
		t.Fatal(err)
	}
	want := &shoalpb.ServiceSpec{
		Replicas: 4,
		Labels:   map[string]string{"team": "web"},
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
				{Protocol: "tcp", PublishedPort: 8080, TargetPort: 80, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
				{Protocol: "udp", PublishedPort: 5353, TargetPort: 53, Mode: shoalpb.PublishMode_PUBLISH_MODE_HOST},
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
