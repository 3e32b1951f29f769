package runtime

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"shoal/internal/testutil"
)

// The fixtures are what a little-endian kernel (amd64, arm64) writes: each
// 32-bit word of an address in host byte order.
const (
	tcpFixture = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0500C80A:1F90 0200C80A:C350 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0500C80A:1F90 0300C80A:C351 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   4: 0500C80A:C352 0900C80A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 20 4 30 10 -1
   5: 0500C80A:1F90 0400C80A:C353 08 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 20 4 30 10 -1
   6: 0500C80A:1F90 0600C80A:C354 06 00000000:00000000 03:00000CB2 00000000     0        0 0 3 0000000000000000
   7: 0100007F:0016 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 1006 1 0000000000000000 20 4 30 10 -1
`
	tcp6Fixture = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000500C80A:0050 0000000000000000FFFF00000200C80A:C360 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
   2: 000000FD000000000000000005000000:0050 000000FD000000000000000002000000:C361 01 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 20 4 30 10 -1
`
)

func fixtureSockets(t *testing.T) []tcpSocket {
	t.Helper()
	socks, err := parseTCP(strings.NewReader(tcpFixture), nil)
	if err != nil {
		t.Fatalf("parse tcp: %v", err)
	}
	socks, err = parseTCP(strings.NewReader(tcp6Fixture), socks)
	if err != nil {
		t.Fatalf("parse tcp6: %v", err)
	}
	return socks
}

func TestParseTCP(t *testing.T) {
	socks := fixtureSockets(t)
	if len(socks) != 11 {
		t.Fatalf("%d sockets, want 11", len(socks))
	}
	for _, tc := range []struct {
		i     int
		local string
		state uint8
		inode uint64
	}{
		{0, "0.0.0.0:8080", tcpListen, 1001},
		{1, "127.0.0.1:22", tcpListen, 1002},
		{2, "10.200.0.5:8080", tcpEstablished, 1003},
		{3, "10.200.0.5:8080", tcpEstablished, 0},
		{6, "10.200.0.5:8080", 0x06, 0},
		{8, "[::]:80", tcpListen, 2001},
		{9, "10.200.0.5:80", tcpEstablished, 2002}, // IPv4-mapped, unmapped
		{10, "[fd00::5]:80", tcpEstablished, 2003},
	} {
		got := socks[tc.i]
		want := tcpSocket{local: netip.MustParseAddrPort(tc.local), state: tc.state, inode: tc.inode}
		if got != want {
			t.Errorf("socket %d: %+v, want %+v", tc.i, got, want)
		}
	}
}

func TestParseTCPRejectsMalformedLines(t *testing.T) {
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for _, line := range []string{
		"   0: 00000000:1F90 00000000:0000 0A",
		"   0: 0000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"   0: 00000000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"   0: 00000000:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x 1",
	} {
		_, err := parseTCP(strings.NewReader(header+line+"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(line)) {
			t.Errorf("%q: error %v, want one naming the line", line, err)
		}
	}
}

func TestCountInbound(t *testing.T) {
	socks := fixtureSockets(t)
	// In a namespace of its own, every connection to a listener is the
	// task's: 8080 accepted and queued, 127.0.0.1:22, both on [::]:80.
	// Not: the outbound one, CLOSE_WAIT, TIME_WAIT.
	if n := countInbound(socks, func(uint64) bool { return true }); n != 5 {
		t.Errorf("own namespace: %d connections, want 5", n)
	}
	// In a shared one, only what the task's listeners accepted: 8080
	// accepted and queued, the IPv4 one on [::]:80. Not: 127.0.0.1:22
	// (another process's listener), fd00::5 (another process holds it).
	owned := map[uint64]bool{1001: true, 1003: true, 1004: true, 1005: true, 2001: true, 2002: true}
	if n := countInbound(socks, func(inode uint64) bool { return owned[inode] }); n != 3 {
		t.Errorf("shared namespace: %d connections, want 3", n)
	}
}

// A listener on one address takes only that address's connections.
func TestCountInboundMatchesTheListenersAddress(t *testing.T) {
	sock := func(addr string, state uint8) tcpSocket {
		return tcpSocket{local: netip.MustParseAddrPort(addr), state: state}
	}
	socks := []tcpSocket{
		sock("127.0.0.1:9000", tcpListen),
		sock("127.0.0.1:9000", tcpEstablished),
		sock("10.0.0.1:9000", tcpEstablished),
	}
	if n := countInbound(socks, func(uint64) bool { return true }); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// The test process's own listener: its accepted and queued connections
// count, its own outbound ones do not, and a closed one stops counting.
func TestInboundConnsOfARealListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	self := []int{os.Getpid()}
	if n, err := InboundConnsOf(self); err != nil || n != 0 {
		t.Fatalf("before any connection: %d, %v; want 0", n, err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first := dial()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	dial() // left in the accept queue
	awaitConns(t, self, 2)
	first.Close()
	awaitConns(t, self, 1)
}

func awaitConns(t *testing.T, pids []int, want int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		n, err := InboundConnsOf(pids)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%d inbound connections, want %d", n, want)
		}
		return nil
	})
}
