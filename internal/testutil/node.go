package testutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness's own waits. They are generous because a 2-core CI
// machine runs several clusters at once; no test asserts on them.
const (
	// StartTimeout bounds a daemon's start until its local socket answers.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds a daemon's exit after SIGTERM.
	StopTimeout = 30 * time.Second
	// SettleTimeout bounds waits for the cluster to agree (ready, leader).
	SettleTimeout = 60 * time.Second
)

// Node is one shoal daemon: its own loopback address, data dir and log.
type Node struct {
	Name    string // m1, w1, …: unique in its cluster, names the data dir and log
	IP      string // loopback address of its own
	Addr    string // IP:2377, the cluster (gRPC) address
	DataDir string

	bin       string
	netns     string // WithHosts: the node's network namespace
	logPath   string
	extraArgs []string // the cluster's daemon arguments, for Restart

	mu   sync.Mutex
	proc *process
}

// process is one run of the daemon.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, set before done is closed
}

func newNode(bin, dir, name, ip string) *Node {
	return &Node{
		Name:    name,
		IP:      ip,
		Addr:    net.JoinHostPort(ip, "2377"),
		DataDir: filepath.Join(dir, name),
		bin:     bin,
		logPath: filepath.Join(dir, name+".log"),
	}
}

// Socket is the -H value of the node's local API.
func (n *Node) Socket() string { return "unix://" + filepath.Join(n.DataDir, "shoal.sock") }

// LogPath is the node's log file; every run of the daemon appends to it.
func (n *Node) LogPath() string { return n.logPath }

// Log returns the node's whole log so far.
func (n *Node) Log(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(n.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatalf("%s: read log: %v", n.Name, err)
	}
	return string(b)
}

// CertsDir is where the node keeps ca.crt, node.crt and node.key.
func (n *Node) CertsDir() string { return filepath.Join(n.DataDir, "certs") }

// Start runs `shoal args...` as this node's daemon, with stdout and stderr
// appended to the node's log. It does not wait for anything; see
// WaitServing. The node must not be running.
func (n *Node) Start(tb testing.TB, args ...string) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		tb.Fatalf("%s: Start: already running (pid %d)", n.Name, n.proc.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatalf("%s: open log: %v", n.Name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	fmt.Fprintf(logFile, "==== %s: shoal %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := n.HostCommand(n.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("%s: start shoal %s: %v", n.Name, strings.Join(args, " "), err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether the daemon process is alive.
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && !p.exited()
}

// PID is the daemon's process id, 0 if it was never started.
func (n *Node) PID() int {
	p := n.current()
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// ExitErr returns how the last run ended: nil while it runs or after a zero
// exit status.
func (n *Node) ExitErr() error {
	p := n.current()
	if p == nil || !p.exited() {
		return nil
	}
	return p.err
}

// Exited returns a channel closed when the current run of the daemon ends.
func (n *Node) Exited() <-chan struct{} {
	p := n.current()
	if p == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Kill sends SIGKILL to the daemon (and anything it started) and waits for
// it to exit, like a machine losing power.
func (n *Node) Kill(tb testing.TB) {
	tb.Helper()
	p := n.current()
	if p == nil || p.exited() {
		tb.Fatalf("%s: Kill: not running", n.Name)
	}
	p.killGroup()
	<-p.done
}

func (p *process) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
}

// Stop sends SIGTERM and waits for the daemon to exit. A daemon that is still
// running after StopTimeout fails the test and is killed.
func (n *Node) Stop(tb testing.TB) {
	tb.Helper()
	p := n.current()
	if p == nil || p.exited() {
		tb.Fatalf("%s: Stop: not running", n.Name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		p.killGroup()
		<-p.done
		tb.Fatalf("%s: still running %s after SIGTERM; killed it (log: %s)", n.Name, StopTimeout, n.logPath)
	}
}

// Restart runs `shoal daemon --data-dir DATADIR` with the cluster's daemon
// arguments and extra, and waits until the local socket answers. The node
// must not be running.
func (n *Node) Restart(tb testing.TB, extra ...string) {
	tb.Helper()
	args := append([]string{"daemon", "--data-dir", n.DataDir}, n.daemonArgs()...)
	n.Start(tb, append(args, extra...)...)
	n.WaitServing(tb)
}

// daemonArgs are set by the cluster for every daemon it starts.
func (n *Node) daemonArgs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.extraArgs
}

// WaitServing waits until the node's local socket answers `shoal info`. It
// fails the test at once, with the end of the log, if the daemon exits.
func (n *Node) WaitServing(tb testing.TB) {
	tb.Helper()
	exited := n.Exited()
	Eventually(tb, StartTimeout, func() error {
		select {
		case <-exited:
			tb.Fatalf("%s: the daemon exited (%v) before serving; end of its log:\n%s", n.Name, n.ExitErr(), Tail(n.Log(tb), 40))
		default:
		}
		_, err := n.Shoal(tb, "info")
		return err
	})
}

// Shoal runs a CLI command against this node's local socket and returns its
// stdout. A non-zero exit is a *CLIError carrying stderr.
func (n *Node) Shoal(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	return run(n.bin, append([]string{"-H", n.Socket()}, args...))
}

// identity is the part of <data-dir>/node.json the harness reads.
type identity struct {
	NodeID string `json:"node_id"`
	Role   string `json:"role"`
}

func (n *Node) identity() (identity, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(n.DataDir, "node.json"))
	if err != nil {
		return id, fmt.Errorf("%s holds no node yet: %w", n.Name, err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("%s: node.json: %w", n.Name, err)
	}
	return id, nil
}

// ID returns the node's ID from its data dir; it works while the daemon is
// down. It fails the test if the data dir holds no node.
func (n *Node) ID(tb testing.TB) string {
	tb.Helper()
	id, err := n.identity()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return id.NodeID
}

// NodeRow is one row of `shoal node ls --format json`.
type NodeRow struct {
	ID            string
	Hostname      string
	Status        string
	Message       string
	Availability  string
	ManagerStatus string
	Role          string
	Address       string
	Labels        map[string]string
}

// NodeLs lists the cluster's nodes as this node (a manager) sees them.
func (n *Node) NodeLs(tb testing.TB) ([]NodeRow, error) {
	tb.Helper()
	out, err := n.Shoal(tb, "node", "ls", "--format", "json")
	if err != nil {
		return nil, err
	}
	var rows []NodeRow
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r NodeRow
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("%s: node ls --format json: %w in %q", n.Name, err, out)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// HostCommand is a command that runs on the node's host: in its network
// namespace for a cluster made WithHosts, in the test's otherwise.
func (n *Node) HostCommand(name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if n.netns == "" {
		cmd = exec.Command(name, args...)
	} else {
		cmd = exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + n.netns, "--", name}, args...)...)
	}
	cmd.Env = childEnv()
	return cmd
}

// purge removes what the containerd runtime left of the node (containers,
// snapshots, mounts, network namespaces, rules): tasks outlive their daemon,
// and nothing else would ever end them. The daemon must be gone.
func (n *Node) purge() error {
	if _, err := os.Stat(filepath.Join(n.DataDir, "containerd")); err != nil {
		return nil
	}
	out, err := n.HostCommand(n.bin, "cleanup", "--data-dir", n.DataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: shoal cleanup: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Tail returns the last n lines of s (the end of a log).
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
