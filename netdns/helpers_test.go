package netdns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recWriter is a fake dns.ResponseWriter that keeps what the handler wrote
// and claims to be a UDP query from src.
type recWriter struct {
	src  netip.AddrPort
	msgs []*dns.Msg
}

func (w *recWriter) WriteMsg(m *dns.Msg) error {
	w.msgs = append(w.msgs, m.Copy())
	return nil
}
func (w *recWriter) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	return len(b), w.WriteMsg(m)
}
func (w *recWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *recWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.src) }
func (w *recWriter) TsigStatus() error    { return nil }
func (w *recWriter) TsigTimersOnly(bool)  {}
func (w *recWriter) Hijack()              {}
func (w *recWriter) Close() error         { return nil }

// fakeNext stands for the forwarder: it records that a query reached it
// and answers REFUSED, which no cluster answer uses.
type fakeNext struct{ names []string }

func (f *fakeNext) Name() string { return "fake" }
func (f *fakeNext) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) {
	f.names = append(f.names, r.Question[0].Name)
	_ = w.WriteMsg(errorReply(r, dns.RcodeRefused))
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testRecords is the fixture of the table tests: two networks, front and
// back; web (VIP, on both, alias www on front, SRV port http), db (dnsrr,
// back only), empty (dnsrr, no ready task), six (IPv6 VIP on front).
func testRecords() Records {
	return Records{Services: []Service{
		{
			ID:    "w1",
			Names: []string{"web", "web.words", "words_web"},
			Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}, {Protocol: "tcp", Port: 81}},
			Networks: []Attachment{
				{Network: "front", VIP: addr("10.0.0.2"), Aliases: []string{"www"}},
				{Network: "back", VIP: addr("10.1.0.2")},
			},
			Tasks: []Task{
				{Name: "web.1.a", Addrs: map[string]netip.Addr{"front": addr("10.0.0.10"), "back": addr("10.1.0.10")}},
				{Name: "web.2.b", Addrs: map[string]netip.Addr{"front": addr("10.0.0.11"), "back": addr("10.1.0.11")}},
			},
		},
		{
			ID: "d1", Names: []string{"db"}, DNSRR: true,
			Networks: []Attachment{{Network: "back"}},
			Tasks: []Task{
				{Name: "db.1.c", Addrs: map[string]netip.Addr{"back": addr("10.1.0.20")}},
				{Name: "db.2.d", Addrs: map[string]netip.Addr{"back": addr("10.1.0.21")}},
			},
		},
		{ID: "e1", Names: []string{"empty"}, DNSRR: true, Networks: []Attachment{{Network: "back"}}},
		{ID: "s1", Names: []string{"six"}, Networks: []Attachment{{Network: "front", VIP: addr("fd00::2")}}},
	}}
}

// rrStrings renders records as "name type value" for comparisons,
// sorted.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		// name ttl class type rdata...
		out = append(out, f[0]+" "+f[3]+" "+strings.Join(f[4:], " "))
	}
	slices.Sort(out)
	return out
}

// needBinary returns the path of a binary the test needs: missing, it
// fails under CI=true and skips otherwise.
func needBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (scripts/install-deps.sh installs it): %v", name, err)
	}
	t.Skipf("%s is not installed: %v", name, err)
	return ""
}
