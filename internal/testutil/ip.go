package testutil

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// Ports a node binds on its address: cluster gRPC, Raft, gossip.
var nodePorts = []string{"2377", "2378", "7946"}

var ips struct {
	sync.Mutex
	next int
}

// ipBlock is the second octet of this process's addresses, 127.100–127.199:
// test packages run in parallel as separate processes, and keying the block
// off the pid keeps them apart; the bind check in FreeIP catches the rest.
func ipBlock() int { return 100 + os.Getpid()%100 }

// FreeIP returns a loopback address that no other FreeIP call of this
// process returned and on which no process listens on the node ports
// (TCP 2377, 2378, 7946 and UDP 7946).
func FreeIP(tb testing.TB) string {
	tb.Helper()
	ips.Lock()
	defer ips.Unlock()
	const perBlock = 254 * 254
	for tries := 0; tries < perBlock; tries++ {
		k := ips.next
		ips.next++
		ip := fmt.Sprintf("127.%d.%d.%d", ipBlock(), 1+(k/254)%254, 1+k%254)
		if portsFree(ip) {
			return ip
		}
	}
	tb.Fatalf("FreeIP: no free loopback address left in 127.%d.0.0/16", ipBlock())
	return ""
}

// portsFree reports whether ip's node ports can all be bound right now.
func portsFree(ip string) bool {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, port := range nodePorts {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			return false
		}
		held = append(held, ln)
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "7946"))
	if err != nil {
		return false
	}
	held = append(held, pc)
	return true
}
