package controlapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalpb "shoal/proto"
)

func specWithChecks(health, readiness *shoalpb.HealthCheck) *shoalpb.ServiceSpec {
	return &shoalpb.ServiceSpec{Name: "web", Replicas: 1, Task: &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{Image: "nginx", Healthcheck: health, Readiness: readiness},
	}}
}

// Bad checks from any client are refused, naming the flag and the fix, and
// nothing is written; good ones pass.
func TestHealthChecksAreValidated(t *testing.T) {
	cmd := []string{"CMD-SHELL", "true"}
	cases := []struct {
		name              string
		health, readiness *shoalpb.HealthCheck
		errPart           string // "": accepted
	}{
		{"shell command", &shoalpb.HealthCheck{Test: cmd, IntervalMs: 5000, Retries: 2}, nil, ""},
		{"exec form", &shoalpb.HealthCheck{Test: []string{"CMD", "/bin/check", "-q"}}, nil, ""},
		{"http and tcp readiness", &shoalpb.HealthCheck{HttpPath: "/healthz", HttpPort: 8080}, &shoalpb.HealthCheck{TcpPort: 5432}, ""},
		{"timings for the image's check", &shoalpb.HealthCheck{IntervalMs: 1000}, nil, ""},
		{"NONE", &shoalpb.HealthCheck{Test: []string{"NONE"}}, nil, ""},
		{"two kinds", &shoalpb.HealthCheck{Test: cmd, TcpPort: 80}, nil, "--health: give exactly one of --health-cmd, --health-http and --health-tcp"},
		{"two readiness kinds", nil, &shoalpb.HealthCheck{HttpPath: "/", HttpPort: 80, TcpPort: 80}, "--readiness: give exactly one of --readiness-cmd"},
		{"tcp port too big", &shoalpb.HealthCheck{TcpPort: 70000}, nil, "--health-tcp: port 70000: give a port from 1 to 65535"},
		{"http port missing", &shoalpb.HealthCheck{HttpPath: "/healthz"}, nil, "--health-http: port 0: give PATH:PORT"},
		{"http port too big", nil, &shoalpb.HealthCheck{HttpPath: "/", HttpPort: 65536}, "--readiness-http: port 65536"},
		{"relative path", &shoalpb.HealthCheck{HttpPath: "healthz", HttpPort: 80}, nil, `--health-http: path "healthz" must start with "/"`},
		{"negative interval", &shoalpb.HealthCheck{Test: cmd, IntervalMs: -1}, nil, "--health-interval: -1ms must not be negative"},
		{"negative timeout", nil, &shoalpb.HealthCheck{TcpPort: 80, TimeoutMs: -5}, "--readiness-timeout: -5ms must not be negative"},
		{"negative start period", &shoalpb.HealthCheck{Test: cmd, StartPeriodMs: -1}, nil, "--health-start-period"},
		{"NONE with a command", &shoalpb.HealthCheck{Test: []string{"NONE"}, TcpPort: 80}, nil, "--no-healthcheck: disables the check, so it cannot be combined"},
		{"NONE with an interval", &shoalpb.HealthCheck{Test: []string{"NONE"}, IntervalMs: 1000}, nil, "--no-healthcheck"},
		{"NONE for readiness", nil, &shoalpb.HealthCheck{Test: []string{"NONE"}}, "--readiness-cmd: NONE only disables an image's liveness check"},
		{"readiness without a probe", nil, &shoalpb.HealthCheck{IntervalMs: 1000}, "--readiness: the readiness check needs a probe"},
		{"empty shell command", &shoalpb.HealthCheck{Test: []string{"CMD-SHELL", " "}}, nil, "--health-cmd: test"},
		{"CMD without a program", &shoalpb.HealthCheck{Test: []string{"CMD"}}, nil, "names no program"},
		{"unknown test form", &shoalpb.HealthCheck{Test: []string{"curl", "-f"}}, nil, `must be "CMD", "CMD-SHELL" or "NONE"`},
	}
	for _, c := range cases {
		checkValidation(t, c.name, specWithChecks(c.health, c.readiness), c.errPart)
	}
}

// checkValidation checks that validateSpec accepts spec when errPart is
// empty, and otherwise refuses it with InvalidArgument naming errPart, the
// same way through CreateService and UpdateService, proposing nothing.
func checkValidation(t *testing.T, name string, spec *shoalpb.ServiceSpec, errPart string) {
	t.Helper()
	s, f := newFixture()
	err := validateSpec(spec)
	if errPart == "" {
		if err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
		return
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), errPart) {
		t.Errorf("%s: got %v, want InvalidArgument containing %q", name, err, errPart)
		return
	}
	if _, err := s.CreateService(context.Background(), &shoalpb.CreateServiceRequest{Spec: spec}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("%s: CreateService: %v", name, err)
	}
	if _, err := s.UpdateService(context.Background(), &shoalpb.UpdateServiceRequest{Service: "web", Spec: spec}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("%s: UpdateService: %v", name, err)
	}
	if f.proposed != 0 {
		t.Errorf("%s: %d proposals after a refusal", name, f.proposed)
	}
}
