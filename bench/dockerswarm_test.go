package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testutil"
	"shoal/worker/runtime/containerd"
)

// The Docker Swarm that BenchmarkSwarm compares shoal with: one dockerd
// (Debian's docker.io, 20.10) per host, each host a network namespace of
// the shoal cluster's test network (testutil.WithHosts), so that dockerd's
// bridges, iptables rules and sysctls live in that namespace and never touch
// the machine's or shoal's; every dockerd has its own data root, exec root,
// socket, pidfile, cgroup parent and the containerd it starts itself. The
// kernel has no IPVS, so Swarm's VIPs and ingress mesh cannot work here:
// services use endpoint mode dnsrr and publish host-mode ports.

// dockerAPI is the Engine API version dockerd 20.10 speaks.
const dockerAPI = "v1.41"

// dockerStopTimeout bounds dockerd's own shutdown (it stops its containers,
// each with a 10 s grace period) before it is killed.
const dockerStopTimeout = 60 * time.Second

// swarmAddrPool is where Swarm allocates its overlay networks' subnets: away
// from the hosts' 10.199.0.0/16 and shoal's 10.200.0.0/16.
const swarmAddrPool = "172.28.0.0/16"

// dockerSwarm is a Swarm of len(nodes) dockerd, nodes[0] its only manager.
type dockerSwarm struct {
	cli   string // the docker client
	nodes []*swarmNode
}

// swarmNode is one dockerd in a host of the shoal cluster's test network.
type swarmNode struct {
	host   *testutil.Node // the namespace and address; no shoal daemon runs there
	dir    string         // data root, exec root, socket, pidfile, client config, log
	cgroup string         // --cgroup-parent: every container's cgroup is under it
	cmd    *exec.Cmd
	done   chan struct{} // closed when dockerd has exited
	api    *http.Client
}

// dockerClient is the docker CLI that Debian's docker.io installs beside
// dockerd: another one earlier on PATH (this machine has a newer client in
// /usr/local/bin) would negotiate 20.10's API version down but is not the
// client Swarm 20.10 users run.
func dockerClient(b *testing.B) string {
	b.Helper()
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	path, err := exec.LookPath("docker")
	if err != nil {
		b.Fatalf("the docker client is not installed: install docker.io (SHOAL_BENCH_DEPS=1 scripts/install-deps.sh): %v", err)
	}
	return path
}

// startSwarm starts n dockerd on new hosts of c (made WithHosts), makes the
// first one a Swarm manager and joins the others as workers, and loads
// images (tar paths) into every node: a Swarm node only runs images it
// holds or can pull, and no registry is reachable here. Everything is
// removed when b ends.
func startSwarm(b *testing.B, c *testutil.Cluster, n int, images []string) *dockerSwarm {
	b.Helper()
	sw := &dockerSwarm{cli: dockerClient(b)}
	for range n {
		sw.nodes = append(sw.nodes, startDockerd(b, c))
	}
	m := sw.nodes[0]
	if out, err := sw.docker(m, "swarm", "init", "--advertise-addr", m.host.IP, "--default-addr-pool", swarmAddrPool); err != nil {
		b.Fatalf("docker swarm init: %v\n%s", err, out)
	}
	token, err := sw.docker(m, "swarm", "join-token", "-q", "worker")
	if err != nil {
		b.Fatalf("docker swarm join-token: %v\n%s", err, token)
	}
	for _, w := range sw.nodes[1:] {
		if out, err := sw.docker(w, "swarm", "join", "--token", strings.TrimSpace(token), "--advertise-addr", w.host.IP, net.JoinHostPort(m.host.IP, "2377")); err != nil {
			b.Fatalf("%s: docker swarm join: %v\n%s", w.host.Name, err, out)
		}
	}
	pollUntil(b, time.Now(), fmt.Sprintf("%d Swarm nodes ready", n), func(ctx context.Context) (bool, error) {
		var nodes []struct {
			Status struct{ State string }
		}
		if err := m.get(ctx, "/nodes", &nodes); err != nil {
			return false, err
		}
		ready := 0
		for _, v := range nodes {
			if v.Status.State == "ready" {
				ready++
			}
		}
		return ready == n, fmt.Errorf("%d of %d nodes ready", ready, len(nodes))
	})
	for _, node := range sw.nodes {
		for _, img := range images {
			if out, err := sw.docker(node, "load", "-i", img); err != nil {
				b.Fatalf("%s: docker load -i %s: %v\n%s", node.host.Name, img, err, out)
			}
		}
	}
	return sw
}

// startDockerd starts a dockerd on a new host of c and waits until it
// answers.
func startDockerd(b *testing.B, c *testutil.Cluster) *swarmNode {
	b.Helper()
	host := c.NewNode(b, "d")
	// A short directory: the socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "shsw-")
	if err != nil {
		b.Fatal(err)
	}
	n := &swarmNode{host: host, dir: dir, cgroup: fmt.Sprintf("shoal-bench-swarm-%d-%s", os.Getpid(), host.Name)}
	sock := filepath.Join(dir, "docker.sock")
	n.api = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	// Registered before dockerd starts: the namespace's cleanup (the
	// cluster's, registered earlier) then runs after this one.
	b.Cleanup(func() { n.cleanup(b) })
	logFile, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close() // dockerd holds its own descriptor
	n.cmd = host.HostCommand("dockerd",
		"--data-root", filepath.Join(dir, "root"),
		"--exec-root", filepath.Join(dir, "run"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--host", "unix://"+sock,
		"--cgroup-parent", n.cgroup,
	)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// SIGTERM if the benchmark process dies: dockerd then stops its
	// containers and its containerd itself.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		b.Fatalf("%s: start dockerd: %v", host.Name, err)
	}
	n.done = make(chan struct{})
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	pollUntil(b, time.Now(), host.Name+"'s dockerd answering", func(ctx context.Context) (bool, error) {
		select {
		case <-n.done:
			b.Fatalf("%s: dockerd exited: %v\n%s", host.Name, n.cmd.ProcessState, n.logTail())
		default:
		}
		return n.get(ctx, "/info", nil) == nil, nil
	})
	return n
}

// docker runs the docker client against node's dockerd and returns its
// output.
func (sw *dockerSwarm) docker(node *swarmNode, args ...string) (string, error) {
	cmd := exec.Command(sw.cli, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DOCKER_HOST=unix://"+filepath.Join(node.dir, "docker.sock"), "DOCKER_CONFIG="+filepath.Join(node.dir, "client"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// get decodes the Engine API's answer to GET path into out (nil: discarded).
// A status other than 200 is an error wrapping errDockerNotFound for 404.
func (n *swarmNode) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/"+dockerAPI+path, nil)
	if err != nil {
		return err
	}
	resp, err := n.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s: GET %s: %s: %s", n.host.Name, path, resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", errDockerNotFound, err)
		}
		return err
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// errDockerNotFound is the Engine API's 404.
var errDockerNotFound = errors.New("not found")

// filterQuery is the Engine API's filters parameter.
func filterQuery(filters map[string][]string) string {
	b, _ := json.Marshal(filters)
	return "?filters=" + url.QueryEscape(string(b))
}

// dockerTask is what BenchmarkSwarm reads of a Swarm task.
type dockerTask struct {
	ID   string
	Spec struct {
		ContainerSpec struct{ Image string }
	}
	Status struct {
		State           string
		ContainerStatus struct{ PID int }
	}
	DesiredState string
}

// dockerTaskLive are the states of a task whose container may still run.
var dockerTaskLive = []string{"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}

// containersLeft counts the containers labelled label ("key=value") on
// every node, stopped ones included.
func (sw *dockerSwarm) containersLeft(ctx context.Context, label string) (int, error) {
	total := 0
	for _, n := range sw.nodes {
		var containers []struct{ ID string }
		if err := n.get(ctx, "/containers/json"+filterQuery(map[string][]string{"label": {label}})+"&all=1", &containers); err != nil {
			return 0, err
		}
		total += len(containers)
	}
	return total, nil
}

// cleanup stops dockerd (it stops its containers and its containerd), then
// removes whatever a dockerd that had to be killed left: processes (its
// containerd, shims, containers), mounts, cgroups and the directory.
func (n *swarmNode) cleanup(tb testing.TB) {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(dockerStopTimeout):
			tb.Errorf("%s: dockerd did not stop within %s of SIGTERM; killed\n%s", n.host.Name, dockerStopTimeout, n.logTail())
			n.cmd.Process.Kill()
			<-n.done
		}
	}
	if err := errors.Join(n.killLeftovers(), containerd.UnmountUnder(n.dir), n.removeCgroups()); err != nil {
		tb.Errorf("%s: cleaning up after dockerd: %v", n.host.Name, err)
	}
	if tb.Failed() {
		tb.Logf("==== %s (dockerd, %s), end of its log:\n%s", n.host.Name, n.host.IP, n.logTail())
	}
	if err := os.RemoveAll(n.dir); err != nil {
		tb.Errorf("%s: %v", n.host.Name, err)
	}
}

// logTail is the end of dockerd's log.
func (n *swarmNode) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "dockerd.log"))
	return testutil.Tail(string(b), 40)
}

// killLeftovers kills the processes whose command line names a path in the
// node's directory (its containerd and shims) and those in its cgroups (the
// containers), and waits until they are gone.
func (n *swarmNode) killLeftovers() error {
	pids := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(cmdline), n.dir+"/") {
			pids[pid] = true
		}
	}
	for _, dir := range n.cgroupDirs() {
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids[pid] = true
			}
		}
	}
	for pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return testutil.Poll(10*time.Second, func() error {
		for pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("process %d is still there", pid)
			}
		}
		return nil
	})
}

// cgroupDirs lists the node's cgroup directories in every hierarchy,
// parents before children.
func (n *swarmNode) cgroupDirs() []string {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", n.cgroup))
	var dirs []string
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	return dirs
}

// removeCgroups removes the node's cgroups, children first; their
// processes must be gone.
func (n *swarmNode) removeCgroups() error {
	dirs := n.cgroupDirs()
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
