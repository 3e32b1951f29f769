package netdns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bigNames is how many addresses big.example has in the dnsmasq upstream:
// more than fit a 1232-byte UDP answer, so it answers truncated.
const bigNames = 100

// startDnsmasq runs a real dnsmasq on 127.0.0.1:PORT answering from a
// hosts file: ext.example (one address), big.example (bigNames
// addresses); other names under example are NXDOMAIN. It stops at the end
// of the test.
func startDnsmasq(t testing.TB, hosts string) string {
	t.Helper()
	bin := needBinary(t, "dnsmasq")
	dir := t.TempDir()
	file := filepath.Join(dir, "hosts")
	if err := os.WriteFile(file, []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		port := freePort(t)
		cmd := exec.Command(bin, "--keep-in-foreground", "--port="+port, "--listen-address=127.0.0.1", "--bind-interfaces",
			"--no-resolv", "--no-hosts", "--addn-hosts="+file, "--conf-file=/dev/null", "--user=root", "--group=root",
			"--local=/example/", "--local-ttl=1", "--log-facility=-", "--pid-file=")
		cmd.Stderr = &strings.Builder{}
		if err := cmd.Start(); err != nil {
			t.Fatalf("dnsmasq: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := net.JoinHostPort("127.0.0.1", port)
		// Poll until it answers (or died: the port was taken, try another).
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				t.Logf("dnsmasq on port %s exited: %s", port, cmd.Stderr)
				deadline = time.Time{}
				continue
			default:
			}
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			if _, _, err := c.Exchange(query("ext.example.", dns.TypeA), addr); err == nil {
				return addr
			}
		}
	}
	t.Fatal("dnsmasq did not start")
	return ""
}

// freePort returns a port free for UDP and TCP on 127.0.0.1 a moment ago.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func upstreamHosts() string {
	var b strings.Builder
	b.WriteString("192.0.2.1 ext.example\n")
	for i := range bigNames {
		fmt.Fprintf(&b, "198.18.%d.%d big.example\n", i/250, i%250+1)
	}
	return b.String()
}

func TestForwardToDnsmasq(t *testing.T) {
	up := startDnsmasq(t, upstreamHosts())
	s, addr := startServer(t, Config{Upstreams: []string{up}})
	s.Swap(NewTable(testRecords()))

	resp := exchange(t, "udp", addr, query("Ext.Example.", dns.TypeA))
	if got := rrStrings(resp.Answer); resp.Rcode != dns.RcodeSuccess || len(got) != 1 || !strings.HasSuffix(got[0], "A 192.0.2.1") {
		t.Errorf("ext.example: %s %q", dns.RcodeToString[resp.Rcode], got)
	}
	if resp := exchange(t, "udp", addr, query("nope.example.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
		t.Errorf("nope.example: %s, want the upstream's NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
	// The cluster's names are still the cluster's.
	if resp := exchange(t, "udp", addr, query("web.", dns.TypeA)); len(resp.Answer) != 2 || !resp.Authoritative {
		t.Errorf("web with an upstream: %v", resp)
	}

	// EDNS0 goes upstream: with 4096 bytes the client gets the whole big
	// answer over UDP (dnsmasq truncates at its own 1232 bytes, so the
	// server asks again over TCP), with the upstream's OPT.
	m := query("big.example.", dns.TypeA)
	m.SetEdns0(4096, false)
	resp = exchange(t, "udp", addr, m)
	if resp.Truncated || len(resp.Answer) != bigNames || resp.IsEdns0() == nil {
		t.Errorf("big.example, EDNS0 4096: TC %v, %d answers, OPT %v; want %d answers and an OPT", resp.Truncated, len(resp.Answer), resp.IsEdns0(), bigNames)
	}
	// Without EDNS0 the client gets TC and the whole answer over TCP.
	resp = exchange(t, "udp", addr, query("big.example.", dns.TypeA))
	if !resp.Truncated {
		t.Errorf("big.example, 512 bytes: TC not set (%d answers)", len(resp.Answer))
	}
	resp = exchange(t, "tcp", addr, query("big.example.", dns.TypeA))
	if resp.Truncated || len(resp.Answer) != bigNames {
		t.Errorf("big.example over TCP: TC %v, %d answers", resp.Truncated, len(resp.Answer))
	}
	// So does the real dig, which retries over TCP by itself.
	dig := needBinary(t, "dig")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "+time=5", "+tries=1", "+noedns", "big.example").CombinedOutput()
	if n := len(strings.Fields(string(out))); err != nil || n != bigNames {
		t.Errorf("dig big.example: %d addresses, err %v\n%s", n, err, out)
	}
}

// TestForwardDeadUpstreams: upstreams are tried in order; a silent one
// costs its timeout, a closed port fails at once; when none answers the
// client gets SERVFAIL.
func TestForwardDeadUpstreams(t *testing.T) {
	up := startDnsmasq(t, upstreamHosts())
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	closed := "127.0.0.1:" + freePort(t)

	_, addr := startServer(t, Config{Upstreams: []string{closed, up}})
	if resp := exchange(t, "udp", addr, query("ext.example.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("closed then dnsmasq: %v", resp)
	}

	_, addr = startServer(t, Config{Upstreams: []string{silent.LocalAddr().String(), closed}})
	for _, network := range []string{"udp", "tcp"} {
		if resp := exchange(t, network, addr, query("ext.example.", dns.TypeA)); resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s, silent and closed upstreams: %s, want SERVFAIL", network, dns.RcodeToString[resp.Rcode])
		}
	}
}

// TestResolvConfUpstreams reads nameservers as ip:53.
func TestResolvConfUpstreams(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f, []byte("search x\nnameserver 127.0.0.53\nnameserver ::1\noptions ndots:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := resolvConfUpstreams(f); !slices.Equal(got, []string{"127.0.0.53:53", "[::1]:53"}) {
		t.Fatalf("upstreams %q", got)
	}
}
