package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"shoal/manager/allocator"
	"shoal/node"
)

const defaultDataDir = "/var/lib/shoal"

// daemonFlags are the flags shared by init, join and daemon.
type daemonFlags struct {
	cfg          node.Config
	logLevel     string
	debugAddr    string
	dnsUpstreams []string
}

func (f *daemonFlags) register(cmd *cobra.Command, addrs bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.DataDir, "data-dir", defaultDataDir, "where the node keeps its state")
	if addrs {
		fl.StringVar(&f.cfg.AdvertiseAddr, "advertise-addr", "", "address other nodes use to reach this one: IP[:PORT] (default: first non-loopback IPv4, port 2377)")
		fl.StringVar(&f.cfg.ListenAddr, "listen-addr", "", "address to listen on: IP[:PORT] (default: the advertise address)")
		fl.IntVar(&f.cfg.GossipPort, "gossip-port", node.DefaultGossipPort, "gossip (memberlist) port")
		fl.StringVar(&f.cfg.Runtime, "runtime", "process", "task runtime: containerd (real containers) or process (host processes, for development)")
	} else {
		fl.StringVar(&f.cfg.Runtime, "runtime", "", "task runtime: containerd or process (default: the one the node was started with)")
	}
	fl.StringVar(&f.cfg.ContainerdAddress, "containerd-address", "", "socket of a running containerd to use (default: the containerd runtime starts its own under the data dir)")
	fl.StringArrayVar(&f.dnsUpstreams, "dns-upstream", nil, "resolver IP[:PORT] the node's DNS forwards names outside the cluster to (repeat for several; default: the host's /etc/resolv.conf)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.Uint64Var(&f.cfg.SnapshotThreshold, "raft-snapshot-threshold", 0, "Raft log entries between snapshots (0: default 8192)")
	fl.Uint64Var(&f.cfg.TrailingLogs, "raft-trailing-logs", 0, "Raft log entries kept after a snapshot (0: default 10240)")
	fl.DurationVar(&f.cfg.SnapshotInterval, "raft-snapshot-interval", 0, "how often Raft checks whether a snapshot is due (0: default 2m)")
	_ = fl.MarkHidden("raft-snapshot-threshold")
	_ = fl.MarkHidden("raft-snapshot-interval")
	_ = fl.MarkHidden("raft-trailing-logs")
	fl.StringVar(&f.debugAddr, "debug-addr", "", "serve Go's profiles (net/http/pprof, /debug/pprof/) on this IP:PORT; for profiling, never expose it")
	_ = fl.MarkHidden("debug-addr")
}

// run starts the daemon in the foreground until SIGINT/SIGTERM.
func (f *daemonFlags) run(mode node.Mode) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel)
	}
	f.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f.cfg.Version = version
	for _, u := range f.dnsUpstreams {
		addr, err := upstreamAddr(u)
		if err != nil {
			return err
		}
		f.cfg.DNSUpstreams = append(f.cfg.DNSUpstreams, addr)
	}
	if f.debugAddr != "" {
		ln, err := net.Listen("tcp", f.debugAddr)
		if err != nil {
			return fmt.Errorf("--debug-addr: %w", err)
		}
		defer ln.Close()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.Serve(ln, mux) }()
		f.cfg.Logger.Info("serving profiles", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := node.Run(ctx, f.cfg, mode)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func newInitCmd() *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "init [flags]",
		Short: "Start a new cluster with this node as its first manager (runs in the foreground)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.cfg.OnReady = printJoinCommands(cmd)
			return f.run(node.ModeInit)
		},
	}
	f.register(cmd, true)
	cmd.Flags().DurationVar(&f.cfg.CertExpiry, "cert-expiry", 0, "lifetime of node certificates (default 2160h0m0s)")
	cmd.Flags().DurationVar(&f.cfg.HeartbeatPeriod, "heartbeat-period", 0, "how often nodes heartbeat to the leader (default 1s)")
	cmd.Flags().StringVar(&f.cfg.TaskPool, "task-pool", allocator.DefaultTaskPool,
		"IPv4 CIDR that container tasks' addresses come from; each containerd node gets a subnet of it (cannot be changed later)")
	cmd.Flags().Uint32Var(&f.cfg.NodeSubnetBits, "node-subnet-size", allocator.DefaultNodeSubnetBits,
		fmt.Sprintf("prefix length of each node's subnet of --task-pool, %d to %d (cannot be changed later)", allocator.MinNodeSubnetBits, allocator.MaxNodeSubnetBits))
	cmd.Flags().StringVar(&f.cfg.NetworkPool, "network-pool", allocator.DefaultNetworkPool,
		"IPv4 CIDR that networks created without --subnet take theirs from, each as large as --task-pool; must not overlap --task-pool")
	return cmd
}

func printJoinCommands(cmd *cobra.Command) func(node.Ready) {
	printed := false
	return func(r node.Ready) {
		if printed {
			return
		}
		printed = true
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "Cluster initialised: node %s is now a manager.\n\n", r.NodeID)
		fmt.Fprintf(out, "To add a worker to this cluster, run:\n\n    shoal join --token %s %s\n\n", r.WorkerToken, r.Addr)
		fmt.Fprintf(out, "To add a manager to this cluster, run:\n\n    shoal join --token %s %s\n\n", r.ManagerToken, r.Addr)
	}
}

func newJoinCmd() *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "join --token TOKEN [flags] MANAGER_ADDR",
		Short: "Join a cluster as a worker or manager, as the token says (runs in the foreground)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.cfg.JoinAddr = args[0]
			f.cfg.OnReady = func(r node.Ready) {
				fmt.Fprintf(cmd.OutOrStdout(), "This node joined the cluster as a %s (node %s).\n", r.Role, r.NodeID)
			}
			return f.run(node.ModeJoin)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&f.cfg.JoinToken, "token", "", "join token from 'shoal join-token worker|manager' (required)")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}

func newDaemonCmd() *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "daemon --data-dir DIR",
		Short: "Restart the node held in a data dir (runs in the foreground)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			started := time.Now()
			f.cfg.OnReady = func(r node.Ready) {
				f.cfg.Logger.Info("node started", "node", r.NodeID, "role", r.Role, "addr", r.Addr, "took", time.Since(started).Round(time.Millisecond))
			}
			return f.run(node.ModeRestart)
		},
	}
	f.register(cmd, false)
	cmd.Flags().BoolVar(&f.cfg.ForceNewCluster, "force-new-cluster", false, "after losing quorum: continue as a one-manager cluster from this manager's state")
	return cmd
}

// upstreamAddr is a --dns-upstream value as ip:port (port 53 when none is
// given).
func upstreamAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap.String(), nil
	}
	return "", fmt.Errorf("--dns-upstream %q: give a resolver's IP or IP:PORT, such as 192.0.2.53 or 127.0.0.1:5353", s)
}
