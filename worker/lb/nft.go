package lb

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// transact runs script as one nft transaction. Callers hold mu.
func (l *LB) transact(script string) error {
	l.transactions++
	_, err := l.run([]string{"-f", "-"}, strings.NewReader(script))
	return err
}

// run runs nft with args in the LB's namespace and returns its output.
func (l *LB) run(args []string, stdin *strings.Reader) (string, error) {
	var stdout, stderr bytes.Buffer
	err := l.inNS(func() error {
		cmd := exec.Command(l.nft, args...)
		if stdin != nil {
			cmd.Stdin = stdin
		}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		return "", fmt.Errorf("%w: nft %s: %w: %s", ErrNft, strings.Join(args, " "), err, firstLines(stderr.String(), 8))
	}
	return stdout.String(), nil
}

// inNS runs fn with its OS thread in the LB's network namespace; a process
// fn starts is born there. With no namespace configured fn runs as it is.
func (l *LB) inNS(fn func() error) error {
	if l.netns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(l.netns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lb: network namespace %s: %w", l.netns, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lb: enter network namespace %s: %w", l.netns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with this goroutine rather
			// than run other goroutines in the wrong namespace.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// udpFlows matches conntrack entries of UDP flows to one of the VIPs that
// were DNATed to a backend now removed from it.
type udpFlows map[flowKey]bool

func (f udpFlows) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != syscall.IPPROTO_UDP {
		return false
	}
	vip, ok1 := addrOf(flow.Forward.DstIP)
	backend, ok2 := addrOf(flow.Reverse.SrcIP)
	return ok1 && ok2 && f[flowKey{vip, backend}]
}

// deleteUDPFlows deletes the conntrack entries of UDP flows from a VIP to a
// backend in gone, so that the next datagram is DNATed afresh instead of
// following the entry to a task that is not ready or not there. TCP
// connections keep theirs: the task drains them, or the client gets a
// reset. One dump of the table serves all of gone.
func (l *LB) deleteUDPFlows(gone []flowKey) error {
	if len(gone) == 0 {
		return nil
	}
	filter := make(udpFlows, len(gone))
	for _, k := range gone {
		filter[k] = true
	}
	var deleted uint
	err := l.withHandle(func(h *netlink.Handle) error {
		var err error
		deleted, err = h.ConntrackDeleteFilters(netlink.ConntrackTable, syscall.AF_INET, filter)
		return err
	})
	if deleted > 0 {
		l.log.Debug("deleted UDP conntrack entries to removed backends", "entries", deleted)
	}
	return err
}

// withHandle gives fn a netlink handle in the LB's namespace.
func (l *LB) withHandle(fn func(*netlink.Handle) error) error {
	var h *netlink.Handle
	var err error
	if l.netns == "" {
		h, err = netlink.NewHandle(syscall.NETLINK_NETFILTER)
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(l.netns)
		if err != nil {
			return fmt.Errorf("network namespace %s: %w", l.netns, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns, syscall.NETLINK_NETFILTER)
	}
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return fn(h)
}

func addrOf(ip net.IP) (a netip.Addr, ok bool) {
	a, ok = netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}
