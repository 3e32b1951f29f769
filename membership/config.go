package membership

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port (UDP and TCP) used when Config.Port is 0 and
// when a Join address has no port.
const DefaultPort = 7946

// KeySize is the length of the cluster gossip key: AES-256.
const KeySize = 32

// Failure-detector defaults, tuned for a LAN cluster of 3–10 nodes.
//
// How long memberlist takes to declare a killed node dead (memberlist v0.6.0,
// state.go suspectNode and util.go suspicionTimeout):
//
//  1. Each survivor probes one peer per ProbeInterval, round robin. The first
//     probe of the dead node starts within one or two intervals of the kill
//     (sooner the more survivors there are), and fails ProbeInterval later,
//     after the direct probe (ProbeTimeout), the indirect probes and the TCP
//     fallback have all gone unanswered. The node becomes suspect: ≈0.5–1 s.
//  2. The suspicion timer's minimum is
//     SuspicionMult × max(1, log10(n)) × ProbeInterval = 3 × 1 × 500 ms = 1.5 s
//     for n ≤ 10. memberlist waits k = SuspicionMult−2 = 1 independent
//     confirmation (another survivor suspecting the node too, which happens
//     within its own next probe of it) before the timer drops to that minimum;
//     without one it runs to SuspicionMaxTimeoutMult × minimum. We set that
//     multiplier to 2 (memberlist's LAN default is 6, i.e. 9 s here) so that a
//     lone accuser, as in a 2-node cluster, still concludes within 3 s.
//
// Kill to EventLeave is therefore about 2–3 s (2.4–3.0 s measured on three
// loopback nodes); a suspicion nobody confirms ends at most 3 s after it
// starts, about 4.5 s after the kill.
const (
	defaultProbeInterval           = 500 * time.Millisecond
	defaultProbeTimeout            = 250 * time.Millisecond
	defaultSuspicionMult           = 3
	defaultSuspicionMaxTimeoutMult = 2
	defaultGossipInterval          = 100 * time.Millisecond
	defaultPushPullInterval        = 15 * time.Second
	// A node restarted under the same name (and perhaps a new address) may
	// rejoin one second after it was declared dead.
	defaultDeadNodeReclaimTime = time.Second
	// Join and the TCP push/pull give up on an unreachable peer after this.
	defaultTCPTimeout = 5 * time.Second
	// A broadcast is sent retransmitMult × ceil(log10(n+1)) times: memberlist's
	// default, shared by its own messages and our leave intents.
	retransmitMult = 4
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config;
// the message names the field.
var ErrInvalidConfig = errors.New("membership: invalid config")

// Config configures a Gossip. NodeID, BindAddr, Key and Meta are required.
type Config struct {
	// NodeID is the node's memberlist name; it must be unique in the cluster.
	NodeID string
	// BindAddr is the IP to bind and to advertise to the other nodes. It must
	// be a specific address, not 0.0.0.0 or ::, because the other nodes dial it.
	BindAddr string
	// Port is the gossip port, UDP and TCP. 0 means DefaultPort.
	Port int
	// Key is the cluster gossip key: KeySize bytes, AES-GCM. Nodes with another
	// key cannot exchange a single message.
	Key []byte
	// Meta is the initial advertised Meta; change it later with UpdateMeta.
	Meta Meta
	// Logger receives membership's logs (joins and failures at Info) and
	// memberlist's own log lines at Debug. nil means slog.Default().
	Logger *slog.Logger

	// ProbeInterval is how often each node probes one peer. 0 means 500 ms.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before
	// indirect probes start; it must be below ProbeInterval. 0 means 250 ms.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect node has to refute before it is
	// declared dead (SuspicionMult × ProbeInterval on up to 10 nodes).
	// 0 means 3.
	SuspicionMult int
}

// withDefaults returns cfg with zero tuning fields replaced by the defaults,
// or an error wrapping ErrInvalidConfig that names the offending field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.NodeID == "" {
		return cfg, fmt.Errorf("%w: NodeID is empty; pass the node id", ErrInvalidConfig)
	}
	ip := net.ParseIP(cfg.BindAddr)
	if ip == nil || ip.IsUnspecified() {
		return cfg, fmt.Errorf("%w: BindAddr %q is not a specific IP address; pass the node's address, e.g. 10.0.0.5",
			ErrInvalidConfig, cfg.BindAddr)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("%w: Port %d is out of range; use 1-65535 or 0 for %d",
			ErrInvalidConfig, cfg.Port, DefaultPort)
	}
	if len(cfg.Key) != KeySize {
		return cfg, fmt.Errorf("%w: Key is %d bytes; the cluster gossip key must be %d bytes",
			ErrInvalidConfig, len(cfg.Key), KeySize)
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = defaultProbeInterval
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = defaultProbeTimeout
	}
	if cfg.SuspicionMult == 0 {
		cfg.SuspicionMult = defaultSuspicionMult
	}
	if cfg.ProbeInterval < 0 || cfg.ProbeTimeout < 0 || cfg.SuspicionMult < 0 {
		return cfg, fmt.Errorf("%w: ProbeInterval, ProbeTimeout and SuspicionMult must not be negative",
			ErrInvalidConfig)
	}
	if cfg.ProbeTimeout >= cfg.ProbeInterval {
		return cfg, fmt.Errorf("%w: ProbeTimeout %v must be below ProbeInterval %v",
			ErrInvalidConfig, cfg.ProbeTimeout, cfg.ProbeInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// addr is the gossip address this node binds and advertises.
func (cfg Config) addr() string {
	return net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port))
}

// memberlistConfig translates cfg (already defaulted) into memberlist's
// configuration, with d as the delegate for events, meta and messages.
func (cfg Config) memberlistConfig(d *delegate, logOut io.Writer) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.BindAddr
	mc.AdvertisePort = cfg.Port
	mc.SecretKey = cfg.Key
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true

	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = defaultSuspicionMaxTimeoutMult
	mc.GossipInterval = defaultGossipInterval
	mc.PushPullInterval = defaultPushPullInterval
	mc.DeadNodeReclaimTime = defaultDeadNodeReclaimTime
	mc.TCPTimeout = defaultTCPTimeout
	mc.RetransmitMult = retransmitMult

	mc.Events = d
	mc.Delegate = d
	mc.Conflict = d
	// No timestamp prefix: slog adds its own.
	mc.Logger = log.New(logOut, "", 0)
	return mc
}
