package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
)

// BenchmarkSwarm times the same steps on shoal and on Docker Swarm, on the
// same machine in the same run, with the same demo images: 3 shoal nodes
// (1 manager, 2 workers, containerd runtime, each in a network namespace of
// its own, as BenchmarkRollingUpdate's) and 3 Swarm nodes (dockerd 20.10
// from Debian, 1 manager, 2 workers, each in a namespace of its own on the
// same test network; see dockerswarm_test.go). Each side is driven through
// its own CLI, each command with --detach, and polled through its own API
// every 10 ms; a step ends when the API shows what the user waits for.
// Swarm runs without IPVS (this kernel has none): its services use endpoint
// mode dnsrr and host-mode published ports, not VIPs and the ingress mesh.
//
// Leaves, each sample timing shoal then Swarm:
//
//   - scale: `service create --replicas 50` of words-db (health check
//     off) until 50 tasks run, `service scale` to 100, then to 0, each
//     until converged;
//   - update: a rolling update (parallelism 1, stop-first, the default
//     of both) of 10 words-web replicas to the version they do not run,
//     until every task runs it and is healthy;
//   - kill: SIGKILL of the one container of a service (restart delay 0
//     on both: the default 5 s of both would dominate) until a new task
//     runs;
//   - stack: `stack deploy` of testdata/stacks/words.yml (for Swarm a
//     copy Docker 20.10 accepts, see swarmCompose) until every task of the
//     3 services runs and is healthy;
//   - load: failed requests of testutil.StartLoad's load against 3 words-web
//     replicas during a rolling update (stop-first) to the other version;
//     each request goes to the next node's published port in turn: shoal's
//     routing mesh, Swarm's host-mode port.
func BenchmarkSwarm(b *testing.B) {
	testutil.RequireRoot(b, "containerd", "runc", "ip", "iptables", "nsenter", "dockerd")
	c := testutil.NewCluster(b, 1, 2, testutil.WithHosts(), testutil.WithDaemonArgs("--runtime", "containerd"))
	var images []string
	for _, img := range []struct{ app, version string }{{"words-db", "v1"}, {"words-app", "v1"}, {"words-web", "v1"}, {"words-web", "v2"}} {
		images = append(images, testutil.DemoImage(b, img.app, img.version))
	}
	// Every node of both sides holds every image before the first step, as
	// a Swarm node must (it would pull the others from a registry).
	for _, n := range c.Nodes() {
		for _, img := range images {
			if out, err := n.Shoal(b, "image", "load", "-i", img); err != nil {
				b.Fatalf("%s: image load %s: %v\n%s", n.Name, img, err, out)
			}
		}
	}
	compose, stack := swarmCompose(b)
	sides := []orchestrator{
		&shoalSide{m: c.Managers[0], cli: readyControl(b, c.Managers[0]), nodes: c.Nodes(), stack: stack},
		&swarmSide{sw: startSwarm(b, c, 3, images), compose: compose, stack: stack},
	}
	fx := &fixtures{sides: sides}
	// What the update and load services run, across the leaves' calls
	// (one per -count).
	versions := map[string]string{"update": "v1", "load": "v1"}
	other := map[string]string{"v1": "v2", "v2": "v1"}

	run := 0
	b.Run("scale", func(b *testing.B) {
		fx.use(b, "scale", nil)
		for b.Loop() {
			run++
			var create, up, down [2]time.Duration
			for i, o := range sides {
				create[i], up[i], down[i] = scaleSteps(b, o, fmt.Sprintf("scale-%d", run))
			}
			b.ReportMetric(0, "ns/op")
			reportPair(b, "create", create)
			reportPair(b, "up", up)
			reportPair(b, "down", down)
		}
	})

	b.Run("update", func(b *testing.B) {
		fx.use(b, "update", func(o orchestrator) {
			o.createService(b, serviceSpec{name: "update", replicas: swarmUpdateReplicas, image: "words-web:v1", env: []string{"APP_NAME=app:8080"}})
			awaitTasks(b, o, "update", swarmUpdateReplicas, ":v1")
		})
		for b.Loop() {
			version := other[versions["update"]]
			versions["update"] = version
			var took [2]time.Duration
			for i, o := range sides {
				start := time.Now()
				o.updateImage(b, "update", "words-web:"+version)
				took[i] = awaitTasks(b, o, "update", swarmUpdateReplicas, ":"+version).Sub(start)
				o.awaitUpdateDone(b, "update")
			}
			b.ReportMetric(0, "ns/op")
			reportPair(b, "update", took)
		}
	})

	b.Run("kill", func(b *testing.B) {
		fx.use(b, "kill", func(o orchestrator) {
			o.createService(b, serviceSpec{name: "kill", replicas: 1, image: "words-db:v1", noHealthcheck: true, noRestartDelay: true})
			awaitTasks(b, o, "kill", 1, "")
		})
		for b.Loop() {
			var took [2]time.Duration
			for i, o := range sides {
				took[i] = killSteps(b, o, "kill")
			}
			b.ReportMetric(0, "ns/op")
			reportPair(b, "replace", took)
		}
	})

	b.Run("stack", func(b *testing.B) {
		fx.use(b, "stack", nil)
		for b.Loop() {
			var took [2]time.Duration
			for i, o := range sides {
				start := time.Now()
				o.deployStack(b)
				var end time.Time
				for service, replicas := range o.stackServices() {
					end = later(end, awaitTasks(b, o, service, replicas, ""))
				}
				took[i] = end.Sub(start)
				o.removeStack(b)
			}
			b.ReportMetric(0, "ns/op")
			reportPair(b, "stack", took)
		}
	})

	b.Run("load", func(b *testing.B) {
		fx.use(b, "load", func(o orchestrator) {
			o.createService(b, serviceSpec{name: "load", replicas: swarmLoadReplicas, image: "words-web:v1", env: []string{"APP_NAME=app:8080"}, port: swarmLoadPort})
			awaitTasks(b, o, "load", swarmLoadReplicas, ":v1")
			for _, addr := range o.addrs() {
				waitURL(b, fmt.Sprintf("http://%s/", net.JoinHostPort(addr, fmt.Sprint(swarmLoadPort))))
			}
		})
		for b.Loop() {
			version := other[versions["load"]]
			versions["load"] = version
			b.ReportMetric(0, "ns/op")
			for _, o := range sides {
				rep, took := loadedUpdate(b, o, "load", "words-web:"+version)
				o.awaitUpdateDone(b, "load")
				b.Logf("%s: release in %.1f s under load: %s", o.name(), took.Seconds(), rep)
				b.ReportMetric(float64(rep.Failed), "failed-"+o.name())
				b.ReportMetric(float64(rep.Requests), "requests-"+o.name())
				b.ReportMetric(took.Seconds(), "release-s-"+o.name())
			}
		}
	})
}

// Sizes and ports of BenchmarkSwarm's services.
const (
	swarmReplicas       = 50
	swarmScaledReplicas = 100
	swarmUpdateReplicas = 10
	swarmLoadReplicas   = 3
	swarmLoadPort       = 8088
)

// swarmStepTimeout bounds one step on either side: Swarm took about 16 s to
// scale from 3 to 50 replicas on these machines.
const swarmStepTimeout = 5 * time.Minute

// orchestrator is one side of BenchmarkSwarm: the steps it times, through
// the side's CLI (the commands return at once), and what its API lists.
type orchestrator interface {
	name() string
	createService(b *testing.B, s serviceSpec)
	scale(b *testing.B, service string, replicas int)
	updateImage(b *testing.B, service, image string)
	// awaitUpdateDone waits until the service's update is over (its
	// monitor period included), so that the next one starts afresh.
	awaitUpdateDone(b *testing.B, service string)
	// removeServices returns once the services' containers are gone.
	removeServices(b *testing.B, services ...string)
	tasks(ctx context.Context, service string) ([]taskView, error)
	deployStack(b *testing.B)
	// stackServices are the deployed stack's services and their replicas.
	stackServices() map[string]int
	// removeStack returns once the stack's containers and network are gone.
	removeStack(b *testing.B)
	// addrs are the nodes' addresses, where published ports listen.
	addrs() []string
}

// serviceSpec is a service both sides create alike.
type serviceSpec struct {
	name           string
	replicas       int
	image          string
	env            []string
	noHealthcheck  bool // the image's HEALTHCHECK off
	noRestartDelay bool // a failed task is replaced at once
	port           int  // published on every node (shoal: routing mesh, HTTP mode; Swarm: host mode), to 80
}

// taskView is what the steps read of a task.
type taskView struct {
	id, image string
	up        bool // running, and healthy (Swarm) or ready (shoal)
	live      bool // not ended: its container may run
	pid       int
}

// fixtures holds the service one leaf needs (named after the leaf), on
// both sides, while its samples run: a leaf's first sample removes the
// previous leaf's.
type fixtures struct {
	sides   []orchestrator
	current string
	made    []string
}

func (f *fixtures) use(b *testing.B, leaf string, create func(orchestrator)) {
	b.Helper()
	if f.current == leaf {
		return
	}
	if len(f.made) > 0 {
		for _, o := range f.sides {
			o.removeServices(b, f.made...)
		}
	}
	f.current, f.made = leaf, nil
	if create != nil {
		for _, o := range f.sides {
			create(o)
		}
		f.made = []string{leaf}
	}
}

// scaleSteps times create 50, scale 100 and scale 0 of a new service, and
// removes it.
func scaleSteps(b *testing.B, o orchestrator, name string) (create, up, down time.Duration) {
	b.Helper()
	start := time.Now()
	o.createService(b, serviceSpec{name: name, replicas: swarmReplicas, image: "words-db:v1", noHealthcheck: true})
	create = awaitTasks(b, o, name, swarmReplicas, "").Sub(start)
	start = time.Now()
	o.scale(b, name, swarmScaledReplicas)
	up = awaitTasks(b, o, name, swarmScaledReplicas, "").Sub(start)
	start = time.Now()
	o.scale(b, name, 0)
	down = awaitTasks(b, o, name, 0, "").Sub(start)
	o.removeServices(b, name)
	return create, up, down
}

// killSteps kills the container of the service's one task and times until
// another task runs in its place.
func killSteps(b *testing.B, o orchestrator, service string) time.Duration {
	b.Helper()
	var victim taskView
	awaitTasks(b, o, service, 1, "")
	tasks, err := listTasks(o, service)
	if err != nil {
		b.Fatalf("%s: tasks of %s: %v", o.name(), service, err)
	}
	for _, t := range tasks {
		if t.up && t.pid > 0 {
			victim = t
		}
	}
	if victim.id == "" {
		b.Fatalf("%s: %s has no running task with a process", o.name(), service)
	}
	start := time.Now()
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		b.Fatalf("%s: kill the container's process %d: %v", o.name(), victim.pid, err)
	}
	return awaitTasksWhere(b, o, service, "a task replacing "+victim.id, func(tasks []taskView) error {
		for _, t := range tasks {
			if t.up && t.id != victim.id {
				return nil
			}
		}
		return fmt.Errorf("no running task but the killed one")
	}).Sub(start)
}

// loadedUpdate updates the service's image under load and reports the
// load's requests during the update, which ends when every task runs
// image.
func loadedUpdate(b *testing.B, o orchestrator, service, image string) (testutil.LoadReport, time.Duration) {
	b.Helper()
	var next atomic.Uint64
	addrs := o.addrs()
	load := testutil.StartLoad(b, testutil.LoadConfig{
		URL:     fmt.Sprintf("http://%s:%d/", service, swarmLoadPort),
		Workers: 8,
		Pace:    10 * time.Millisecond,
		Timeout: 2 * time.Second,
		// Each request to the next node in turn, as a client-side list of
		// the nodes (or DNS round robin) would send them.
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			addr := addrs[next.Add(1)%uint64(len(addrs))]
			return d.DialContext(ctx, network, net.JoinHostPort(addr, fmt.Sprint(swarmLoadPort)))
		},
	})
	// The load runs before the update starts.
	testutil.Eventually(b, time.Minute, func() error {
		if r := load.Report(); r.Requests < 50 {
			return fmt.Errorf("%s: %d requests before the update", o.name(), r.Requests)
		}
		return nil
	})
	start := time.Now()
	o.updateImage(b, service, image)
	awaitTasks(b, o, service, swarmLoadReplicas, ":"+strings.TrimPrefix(image, "words-web:"))
	took := time.Since(start)
	return load.Stop(), took
}

// listTasks lists the service's tasks with a bounded call.
func listTasks(o orchestrator, service string) ([]taskView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return o.tasks(ctx, service)
}

// awaitTasks polls until exactly want tasks of the service are live, all of
// them up and with an image ending in image ("" for any), and returns when.
func awaitTasks(b *testing.B, o orchestrator, service string, want int, image string) time.Time {
	b.Helper()
	return awaitTasksWhere(b, o, service, fmt.Sprintf("%d tasks of %s up", want, service), func(tasks []taskView) error {
		live, up := 0, 0
		for _, t := range tasks {
			if !t.live {
				continue
			}
			live++
			// A pinned image (NAME:TAG@DIGEST) counts by its name.
			name, _, _ := strings.Cut(t.image, "@")
			if t.up && strings.HasSuffix(name, image) {
				up++
			}
		}
		if live != want || up != want {
			return fmt.Errorf("%d live, %d of them up with image *%s", live, up, image)
		}
		return nil
	})
}

// awaitTasksWhere polls the service's tasks until done accepts them, and
// returns when.
func awaitTasksWhere(b *testing.B, o orchestrator, service, what string, done func([]taskView) error) time.Time {
	b.Helper()
	return awaitStep(b, o, what, func(ctx context.Context) error {
		tasks, err := o.tasks(ctx, service)
		if err != nil {
			return err
		}
		return done(tasks)
	})
}

// reportPair reports a step's time on shoal (took[0]) and Swarm (took[1])
// and their ratio.
func reportPair(b *testing.B, step string, took [2]time.Duration) {
	b.Helper()
	b.ReportMetric(ms(took[0]), step+"-shoal-ms")
	b.ReportMetric(ms(took[1]), step+"-swarm-ms")
	b.ReportMetric(float64(took[0])/float64(took[1]), step+"-ratio")
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wordsStackFile is the words demo stack, from the bench directory.
func wordsStackFile(b *testing.B) string {
	b.Helper()
	path, err := filepath.Abs(filepath.Join("..", "testdata", "stacks", "words.yml"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		b.Fatalf("the words stack: %v", err)
	}
	return path
}
