package runtime

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ConnCounter is implemented by Handles that can count the task's open
// inbound TCP connections, so that a stopping task is sent its stop signal
// only once its clients are done (or its stop grace period has passed).
type ConnCounter interface {
	// InboundConns counts the task's established TCP connections that one
	// of its listening sockets accepted, or holds in its accept queue.
	// Connections the task opened itself are not counted. A task that has
	// ended has none; an error means the count is unknown.
	InboundConns(ctx context.Context) (int, error)
}

// TCP states as /proc/net/tcp writes them (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpListen      = 0x0a
)

// tcpSocket is one line of /proc/net/tcp or tcp6.
type tcpSocket struct {
	local netip.AddrPort // IPv4-mapped IPv6 addresses unmapped
	state uint8
	inode uint64 // 0: no process holds it yet (a connection not accepted)
}

// InboundConnsInNetns counts the inbound connections in the network
// namespace of pid, which must be the task's own: every established
// connection to one of the namespace's listening sockets counts.
func InboundConnsInNetns(pid int) (int, error) {
	socks, err := readTCP(pid)
	if err != nil {
		return 0, err
	}
	return countInbound(socks, func(uint64) bool { return true }), nil
}

// InboundConnsOf counts the inbound connections of the processes pids in a
// network namespace they share with others (the host's): only listening
// sockets they hold open count, and the connections those accepted, which
// they hold too, or queue (no process holds those yet).
func InboundConnsOf(pids []int) (int, error) {
	owned := map[uint64]bool{}
	for _, pid := range pids {
		if err := socketInodes(pid, owned); err != nil {
			return 0, err
		}
	}
	if len(owned) == 0 {
		return 0, nil
	}
	socks, err := readTCP(pids[0])
	if err != nil {
		return 0, err
	}
	return countInbound(socks, func(inode uint64) bool { return owned[inode] }), nil
}

// socketInodes adds the inodes of the sockets pid holds open to owned. A
// process that has ended holds none.
func socketInodes(pid int, owned map[uint64]bool) error {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list the sockets of pid %d: %w", pid, err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		num, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		if inode, err := strconv.ParseUint(strings.TrimSuffix(num, "]"), 10, 64); err == nil {
			owned[inode] = true
		}
	}
	return nil
}

// readTCP reads the TCP sockets of pid's network namespace, IPv4 and IPv6.
func readTCP(pid int) ([]tcpSocket, error) {
	var socks []tcpSocket
	for _, name := range []string{"tcp", "tcp6"} {
		path := filepath.Join("/proc", strconv.Itoa(pid), "net", name)
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) && name == "tcp6" {
			continue // IPv6 disabled
		}
		if err != nil {
			return nil, fmt.Errorf("read the TCP sockets of pid %d: %w", pid, err)
		}
		socks, err = parseTCP(f, socks)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return socks, nil
}

// parseTCP appends the sockets of a /proc/net/tcp or tcp6 table to socks.
func parseTCP(r io.Reader, socks []tcpSocket) ([]tcpSocket, error) {
	sc := bufio.NewScanner(r)
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return socks, fmt.Errorf("line %q: %d fields, want at least 10", sc.Text(), len(f))
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return socks, fmt.Errorf("line %q: local address: %w", sc.Text(), err)
		}
		state, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return socks, fmt.Errorf("line %q: state: %w", sc.Text(), err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return socks, fmt.Errorf("line %q: inode: %w", sc.Text(), err)
		}
		socks = append(socks, tcpSocket{local: local, state: uint8(state), inode: inode})
	}
	return socks, sc.Err()
}

// parseProcAddr reads "0100007F:1F90": the address as the kernel's 32-bit
// words, each printed in hex in host byte order, then the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q has no port", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IPv4 or IPv6 address", hexAddr)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", hexPort, err)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// countInbound counts the established connections to a listening socket
// that owns accepts: held by an owned process or not accepted yet (inode
// 0). A listener on a wildcard address takes its port on every address.
func countInbound(socks []tcpSocket, owns func(inode uint64) bool) int {
	var listeners []netip.AddrPort
	for _, s := range socks {
		if s.state == tcpListen && owns(s.inode) {
			listeners = append(listeners, s.local)
		}
	}
	n := 0
	for _, s := range socks {
		if s.state != tcpEstablished || (s.inode != 0 && !owns(s.inode)) {
			continue
		}
		for _, l := range listeners {
			if l.Port() == s.local.Port() && (l.Addr().IsUnspecified() || l.Addr() == s.local.Addr()) {
				n++
				break
			}
		}
	}
	return n
}
