package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// wordsStackName is the name both sides deploy the words stack as; each
// names its services STACK_SERVICE.
const wordsStackName = "words"

// shoalSide is BenchmarkSwarm's shoal: the CLI on the manager, ListTasks
// on its socket.
type shoalSide struct {
	m     *testutil.Node
	cli   shoalpb.ControlServiceClient
	nodes []*testutil.Node
	stack map[string]int // the words stack's services and replicas
}

func (s *shoalSide) name() string { return "shoal" }

func (s *shoalSide) shoal(b *testing.B, args ...string) {
	b.Helper()
	if out, err := s.m.Shoal(b, args...); err != nil {
		b.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *shoalSide) createService(b *testing.B, spec serviceSpec) {
	b.Helper()
	args := []string{"service", "create", "--detach", "--name", spec.name, "--replicas", strconv.Itoa(spec.replicas)}
	for _, e := range spec.env {
		args = append(args, "--env", e)
	}
	if spec.noHealthcheck {
		args = append(args, "--no-healthcheck")
	}
	if spec.noRestartDelay {
		args = append(args, "--restart-delay", "0s")
	}
	if spec.port != 0 {
		args = append(args, "--publish", fmt.Sprintf("published=%d,target=80,mesh=http", spec.port))
	}
	s.shoal(b, append(args, spec.image)...)
}

func (s *shoalSide) scale(b *testing.B, service string, replicas int) {
	b.Helper()
	s.shoal(b, "service", "scale", "--detach", fmt.Sprintf("%s=%d", service, replicas))
}

func (s *shoalSide) updateImage(b *testing.B, service, image string) {
	b.Helper()
	s.shoal(b, "service", "update", "--detach", "--update-order", "stop-first", "--image", image, service)
}

func (s *shoalSide) awaitUpdateDone(b *testing.B, service string) {
	b.Helper()
	awaitRolloutDone(b, s.cli, service)
}

func (s *shoalSide) removeServices(b *testing.B, services ...string) {
	b.Helper()
	ids := s.serviceIDs(b, services)
	s.shoal(b, append([]string{"service", "rm"}, services...)...)
	for _, id := range ids {
		awaitGone(b, s.cli, id)
	}
}

// serviceIDs are the services' IDs, which outlive their removal in the
// tasks' records.
func (s *shoalSide) serviceIDs(b *testing.B, services []string) []string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for _, name := range services {
		svc, err := s.cli.GetService(ctx, &shoalpb.GetServiceRequest{Service: name})
		if err != nil {
			b.Fatalf("get service %s: %v", name, err)
		}
		ids = append(ids, svc.GetId())
	}
	return ids
}

func (s *shoalSide) tasks(ctx context.Context, service string) ([]taskView, error) {
	resp, err := s.cli.ListTasks(ctx, &shoalpb.ListTasksRequest{Filters: map[string]string{"service": service}})
	if err != nil {
		return nil, err
	}
	var out []taskView
	for _, t := range resp.GetTasks() {
		st := t.GetStatus()
		out = append(out, taskView{
			id:    t.GetId(),
			image: t.GetSpec().GetContainer().GetImage(),
			up:    st.GetState() == shoalpb.TaskState_TASK_STATE_RUNNING && st.GetReady(),
			live:  st.GetState() < shoalpb.TaskState_TASK_STATE_COMPLETE,
			pid:   int(st.GetPid()),
		})
	}
	return out, nil
}

func (s *shoalSide) deployStack(b *testing.B) {
	b.Helper()
	s.shoal(b, "stack", "deploy", "-c", wordsStackFile(b), "--resolve-image", "never", "--detach", wordsStackName)
}

func (s *shoalSide) stackServices() map[string]int { return s.stack }

func (s *shoalSide) removeStack(b *testing.B) {
	b.Helper()
	ids := s.serviceIDs(b, slices.Sorted(maps.Keys(s.stack)))
	s.shoal(b, "stack", "rm", wordsStackName)
	for _, id := range ids {
		awaitGone(b, s.cli, id)
	}
}

func (s *shoalSide) addrs() []string {
	var out []string
	for _, n := range s.nodes {
		out = append(out, n.IP)
	}
	return out
}

// swarmSide is BenchmarkSwarm's Docker Swarm: the docker client and the
// Engine API of its manager (and of every node for their containers).
type swarmSide struct {
	sw      *dockerSwarm
	compose string         // the words stack as Docker 20.10 takes it (swarmCompose)
	stack   map[string]int // its services and replicas
}

func (s *swarmSide) name() string { return "swarm" }

func (s *swarmSide) docker(b *testing.B, args ...string) {
	b.Helper()
	if out, err := s.sw.docker(s.sw.nodes[0], args...); err != nil {
		b.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *swarmSide) createService(b *testing.B, spec serviceSpec) {
	b.Helper()
	// No registry: --no-resolve-image runs the image each node holds.
	// No IPVS: no VIP (dnsrr), and ports published on each task's node.
	args := []string{"service", "create", "--detach", "--no-resolve-image", "--name", spec.name,
		"--replicas", strconv.Itoa(spec.replicas), "--endpoint-mode", "dnsrr"}
	for _, e := range spec.env {
		args = append(args, "--env", e)
	}
	if spec.noHealthcheck {
		args = append(args, "--no-healthcheck")
	}
	if spec.noRestartDelay {
		args = append(args, "--restart-delay", "0s")
	}
	if spec.port != 0 {
		args = append(args, "--publish", fmt.Sprintf("mode=host,target=80,published=%d", spec.port))
	}
	s.docker(b, append(args, spec.image)...)
}

func (s *swarmSide) scale(b *testing.B, service string, replicas int) {
	b.Helper()
	s.docker(b, "service", "scale", "--detach", fmt.Sprintf("%s=%d", service, replicas))
}

func (s *swarmSide) updateImage(b *testing.B, service, image string) {
	b.Helper()
	s.docker(b, "service", "update", "--detach", "--no-resolve-image", "--update-order", "stop-first", "--image", image, service)
}

func (s *swarmSide) awaitUpdateDone(b *testing.B, service string) {
	b.Helper()
	awaitStep(b, s, service+"'s update completed", func(ctx context.Context) error {
		var svc struct {
			UpdateStatus *struct{ State, Message string }
		}
		if err := s.sw.nodes[0].get(ctx, "/services/"+service, &svc); err != nil {
			return err
		}
		if st := svc.UpdateStatus; st == nil || st.State != "completed" {
			return fmt.Errorf("update status %+v", st)
		}
		return nil
	})
}

func (s *swarmSide) removeServices(b *testing.B, services ...string) {
	b.Helper()
	s.docker(b, append([]string{"service", "rm"}, services...)...)
	for _, name := range services {
		s.awaitContainersGone(b, "com.docker.swarm.service.name="+name)
	}
}

// awaitContainersGone waits until no node holds a container labelled
// label, stopped ones included.
func (s *swarmSide) awaitContainersGone(b *testing.B, label string) {
	b.Helper()
	awaitStep(b, s, "no container labelled "+label, func(ctx context.Context) error {
		n, err := s.sw.containersLeft(ctx, label)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d containers left", n)
		}
		return err
	})
}

func (s *swarmSide) tasks(ctx context.Context, service string) ([]taskView, error) {
	var tasks []dockerTask
	if err := s.sw.nodes[0].get(ctx, "/tasks"+filterQuery(map[string][]string{"service": {service}}), &tasks); err != nil {
		return nil, err
	}
	out := make([]taskView, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, taskView{
			id:    t.ID,
			image: t.Spec.ContainerSpec.Image,
			// A task with a health check is "starting" until healthy.
			up:   t.Status.State == "running" && t.DesiredState == "running",
			live: slices.Contains(dockerTaskLive, t.Status.State),
			pid:  t.Status.ContainerStatus.PID,
		})
	}
	return out, nil
}

func (s *swarmSide) deployStack(b *testing.B) {
	b.Helper()
	s.docker(b, "stack", "deploy", "-c", s.compose, "--resolve-image", "never", wordsStackName)
}

func (s *swarmSide) stackServices() map[string]int { return s.stack }

func (s *swarmSide) removeStack(b *testing.B) {
	b.Helper()
	s.docker(b, "stack", "rm", wordsStackName)
	s.awaitContainersGone(b, "com.docker.stack.namespace="+wordsStackName)
	// The next deploy creates the network again: the old one must be gone
	// from every node.
	network := wordsStackName + "_default"
	awaitStep(b, s, "network "+network+" removed", func(ctx context.Context) error {
		for _, n := range s.sw.nodes {
			if err := n.get(ctx, "/networks/"+network, nil); !errors.Is(err, errDockerNotFound) {
				return fmt.Errorf("%s still has it (%v)", n.host.Name, err)
			}
		}
		return nil
	})
}

func (s *swarmSide) addrs() []string {
	var out []string
	for _, n := range s.sw.nodes {
		out = append(out, n.host.IP)
	}
	return out
}

// swarmCompose writes the copy of testdata/stacks/words.yml that Docker
// 20.10's `docker stack deploy` takes, and returns its path and the stack's
// services (STACK_SERVICE) with their replicas. The differences:
//
//   - `version: "3.8"`: Docker 20.10 refuses a file without one
//     ("unsupported Compose file version: 1.0");
//   - no depends_on: its long form (`condition: service_healthy`) is not
//     in the 3.x schema, and Swarm ignores depends_on anyway, so Swarm
//     starts all three tiers at once where shoal waits for each tier's
//     dependency to be healthy;
//   - `endpoint_mode: dnsrr` and ports published in host mode (Swarm's
//     VIPs and ingress mesh need IPVS, which this kernel lacks); shoal
//     publishes 8080 through its routing mesh on every node.
func swarmCompose(b *testing.B) (path string, services map[string]int) {
	b.Helper()
	src := wordsStackFile(b)
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		b.Fatalf("%s: %v", src, err)
	}
	doc["version"] = "3.8"
	svcs, _ := doc["services"].(map[string]any)
	if len(svcs) == 0 {
		b.Fatalf("%s: no services", src)
	}
	services = map[string]int{}
	for name, v := range svcs {
		svc, ok := v.(map[string]any)
		if !ok {
			b.Fatalf("%s: services.%s is not a mapping", src, name)
		}
		delete(svc, "depends_on")
		deploy, _ := svc["deploy"].(map[string]any)
		if deploy == nil {
			deploy = map[string]any{}
			svc["deploy"] = deploy
		}
		deploy["endpoint_mode"] = "dnsrr"
		replicas := 1
		if r, ok := deploy["replicas"].(int); ok {
			replicas = r
		}
		services[wordsStackName+"_"+name] = replicas
		ports, _ := svc["ports"].([]any)
		for i, p := range ports {
			short, ok := p.(string)
			published, target, found := strings.Cut(short, ":")
			pub, err1 := strconv.Atoi(published)
			tgt, err2 := strconv.Atoi(target)
			if !ok || !found || errors.Join(err1, err2) != nil {
				b.Fatalf("%s: services.%s.ports[%d] = %v: the Swarm copy handles \"PUBLISHED:TARGET\" only", src, name, i, p)
			}
			ports[i] = map[string]any{"target": tgt, "published": pub, "protocol": "tcp", "mode": "host"}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	path = filepath.Join(b.TempDir(), "words-swarm.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		b.Fatal(err)
	}
	return path, services
}

// awaitStep polls fn every pollInterval until it returns nil, and returns
// when; it fails b after swarmStepTimeout with fn's last error.
func awaitStep(b *testing.B, o orchestrator, what string, fn func(ctx context.Context) error) time.Time {
	b.Helper()
	deadline := time.Now().Add(swarmStepTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := fn(ctx)
		cancel()
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: no %s within %s: %v", o.name(), what, swarmStepTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}
