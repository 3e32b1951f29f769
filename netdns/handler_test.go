package netdns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// newTestCluster serves testRecords with a fake forwarder. Queriers from
// 192.0.2.1 are on front, from 192.0.2.2 on back, from 192.0.2.3 on both;
// any other source is unknown and sees everything.
func newTestCluster(t *testing.T) (*cluster, *fakeNext) {
	t.Helper()
	var p atomic.Pointer[Table]
	p.Store(NewTable(testRecords()))
	next := &fakeNext{}
	scope := func(src netip.Addr) ([]string, bool) {
		switch src.String() {
		case "192.0.2.1":
			return []string{"front"}, true
		case "192.0.2.2":
			return []string{"back"}, true
		case "192.0.2.3":
			return []string{"front", "back"}, true
		}
		return nil, false
	}
	return &cluster{table: &p, scope: scope, next: next}, next
}

var (
	onFront = netip.MustParseAddrPort("192.0.2.1:5000")
	onBack  = netip.MustParseAddrPort("192.0.2.2:5000")
	onBoth  = netip.MustParseAddrPort("192.0.2.3:5000")
	unknown = netip.MustParseAddrPort("198.51.100.9:5000")
)

func TestClusterAnswers(t *testing.T) {
	const (
		fwd    = -1 // forwarded upstream
		nodata = -2 // NOERROR, no answer
	)
	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
		from  netip.AddrPort
		rcode int // or fwd / nodata
		want  []string
		extra []string
	}{
		{"service VIP on the shared network", "web.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"web. A 10.0.0.2"}, nil},
		{"service VIP on the other network", "web.", dns.TypeA, onBack, dns.RcodeSuccess, []string{"web. A 10.1.0.2"}, nil},
		{"one VIP per shared network", "web.", dns.TypeA, onBoth, dns.RcodeSuccess, []string{"web. A 10.0.0.2", "web. A 10.1.0.2"}, nil},
		{"unknown querier sees every network", "web.", dns.TypeA, unknown, dns.RcodeSuccess, []string{"web. A 10.0.0.2", "web. A 10.1.0.2"}, nil},
		{"stack name", "web.words.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"web.words. A 10.0.0.2"}, nil},
		{"stack-prefixed name", "words_web.", dns.TypeA, onBack, dns.RcodeSuccess, []string{"words_web. A 10.1.0.2"}, nil},
		{"case-insensitive, owner as asked", "WEB.Words.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"WEB.Words. A 10.0.0.2"}, nil},
		{"alias on its network", "www.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"www. A 10.0.0.2"}, nil},
		{"alias off its network", "www.", dns.TypeA, onBack, dns.RcodeNameError, nil, nil},
		{"tasks.name", "tasks.web.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"tasks.web. A 10.0.0.10", "tasks.web. A 10.0.0.11"}, nil},
		{"tasks.stack name", "tasks.web.words.", dns.TypeA, onBack, dns.RcodeSuccess, []string{"tasks.web.words. A 10.1.0.10", "tasks.web.words. A 10.1.0.11"}, nil},
		{"tasks.alias", "tasks.www.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"tasks.www. A 10.0.0.10", "tasks.www. A 10.0.0.11"}, nil},
		{"task name", "web.1.a.", dns.TypeA, onBack, dns.RcodeSuccess, []string{"web.1.a. A 10.1.0.10"}, nil},
		{"task name, mixed case", "Web.1.A.", dns.TypeA, onFront, dns.RcodeSuccess, []string{"Web.1.A. A 10.0.0.10"}, nil},
		{"dnsrr answers the tasks", "db.", dns.TypeA, onBack, dns.RcodeSuccess, []string{"db. A 10.1.0.20", "db. A 10.1.0.21"}, nil},
		{"service on no shared network is NXDOMAIN", "db.", dns.TypeA, onFront, dns.RcodeNameError, nil, nil},
		{"its tasks.name too", "tasks.db.", dns.TypeA, onFront, dns.RcodeNameError, nil, nil},
		{"its task names too", "db.1.c.", dns.TypeA, onFront, dns.RcodeNameError, nil, nil},
		{"dnsrr without ready tasks is NODATA", "empty.", dns.TypeA, onBack, nodata, nil, nil},
		{"tasks.name without ready tasks is NODATA", "tasks.empty.", dns.TypeA, onBack, nodata, nil, nil},
		{"AAAA of an IPv4 service is NODATA", "web.", dns.TypeAAAA, onFront, nodata, nil, nil},
		{"MX of a service is NODATA", "web.", dns.TypeMX, onFront, nodata, nil, nil},
		{"TXT of a task is NODATA", "web.1.a.", dns.TypeTXT, onFront, nodata, nil, nil},
		{"IPv6 VIP", "six.", dns.TypeAAAA, onFront, dns.RcodeSuccess, []string{"six. AAAA fd00::2"}, nil},
		{"A of an IPv6 service is NODATA", "six.", dns.TypeA, onFront, nodata, nil, nil},
		{"SRV of a named port", "_http._tcp.web.", dns.TypeSRV, onFront, dns.RcodeSuccess,
			[]string{"_http._tcp.web. SRV 0 1 80 web.1.a.", "_http._tcp.web. SRV 0 1 80 web.2.b."},
			[]string{"web.1.a. A 10.0.0.10", "web.2.b. A 10.0.0.11"}},
		{"SRV of an alias", "_http._tcp.www.", dns.TypeSRV, onFront, dns.RcodeSuccess,
			[]string{"_http._tcp.www. SRV 0 1 80 web.1.a.", "_http._tcp.www. SRV 0 1 80 web.2.b."},
			[]string{"web.1.a. A 10.0.0.10", "web.2.b. A 10.0.0.11"}},
		{"SRV of an unknown port name is forwarded", "_ftp._tcp.web.", dns.TypeSRV, onFront, fwd, nil, nil},
		{"ANY is answered with what the name has", "web.", dns.TypeANY, onFront, dns.RcodeSuccess, []string{"web. A 10.0.0.2"}, nil},
		{"PTR of a VIP", "2.0.0.10.in-addr.arpa.", dns.TypePTR, onFront, dns.RcodeSuccess, []string{"2.0.0.10.in-addr.arpa. PTR web."}, nil},
		{"PTR of a task", "10.0.1.10.in-addr.arpa.", dns.TypePTR, onBack, dns.RcodeSuccess, []string{"10.0.1.10.in-addr.arpa. PTR web.1.a."}, nil},
		{"PTR of another network's task", "20.0.1.10.in-addr.arpa.", dns.TypePTR, onFront, dns.RcodeNameError, nil, nil},
		{"outside name is forwarded", "example.com.", dns.TypeA, onFront, fwd, nil, nil},
		{"tasks. of an unknown name is forwarded", "tasks.example.com.", dns.TypeA, onFront, fwd, nil, nil},
		{"unknown task name is forwarded", "web.9.z.", dns.TypeA, onFront, fwd, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, next := newTestCluster(t)
			r := new(dns.Msg)
			r.SetQuestion(tc.qname, tc.qtype)
			r.Id = 4242
			w := &recWriter{src: tc.from}
			c.ServeDNS(context.Background(), w, r)
			if len(w.msgs) != 1 {
				t.Fatalf("%d responses, want 1", len(w.msgs))
			}
			m := w.msgs[0]
			if m.Id != 4242 || !m.Response || len(m.Question) != 1 || m.Question[0].Name != tc.qname {
				t.Fatalf("response header/question = %d %v %v, want the query's", m.Id, m.Response, m.Question)
			}
			if tc.rcode == fwd {
				if len(next.names) != 1 || m.Rcode != dns.RcodeRefused {
					t.Fatalf("not forwarded: rcode %s, forwarded %v", dns.RcodeToString[m.Rcode], next.names)
				}
				return
			}
			if len(next.names) != 0 {
				t.Fatalf("forwarded %v, want a cluster answer", next.names)
			}
			want := tc.rcode
			if want == nodata {
				want = dns.RcodeSuccess
			}
			if m.Rcode != want || !m.Authoritative {
				t.Fatalf("rcode %s AA %v, want %s AA", dns.RcodeToString[m.Rcode], m.Authoritative, dns.RcodeToString[want])
			}
			if got := rrStrings(m.Answer); !slices.Equal(got, tc.want) {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
			if got := rrStrings(m.Extra); !slices.Equal(got, tc.extra) {
				t.Errorf("additional %q, want %q", got, tc.extra)
			}
			for _, rr := range m.Answer {
				if rr.Header().Ttl != 1 {
					t.Errorf("TTL %d, want 1: %s", rr.Header().Ttl, rr)
				}
			}
		})
	}
}

func TestClusterRotatesAnswers(t *testing.T) {
	c, _ := newTestCluster(t)
	firsts := map[string]bool{}
	for range 4 {
		r := new(dns.Msg)
		r.SetQuestion("tasks.web.", dns.TypeA)
		w := &recWriter{src: onFront}
		c.ServeDNS(context.Background(), w, r)
		firsts[w.msgs[0].Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) != 2 {
		t.Fatalf("first addresses over 4 queries: %v, want both tasks in turn", firsts)
	}
}

func TestClusterEDNS0(t *testing.T) {
	c, _ := newTestCluster(t)
	r := new(dns.Msg)
	r.SetQuestion("web.", dns.TypeA)
	r.SetEdns0(4096, false)
	w := &recWriter{src: onFront}
	c.ServeDNS(context.Background(), w, r)
	if w.msgs[0].IsEdns0() == nil {
		t.Fatal("answer to an EDNS0 query has no OPT record")
	}
}

func TestTableTTL(t *testing.T) {
	tb := NewTable(testRecords()).withTTL(0)
	rr := tb.lookup("web.").sets[0].a[0]
	if rr.Header().Ttl != 0 {
		t.Fatalf("TTL %d with TTL 0, want 0", rr.Header().Ttl)
	}
	if got := NewTable(testRecords()).withTTL(5 * 1e9).lookup("web.").sets[0].a[0].Header().Ttl; got != 5 {
		t.Fatalf("TTL %d, want 5", got)
	}
}

// TestSwapWhileServing queries from several goroutines while tables are
// swapped: every answer comes whole from one table or the other (run with
// -race).
func TestSwapWhileServing(t *testing.T) {
	c, _ := newTestCluster(t)
	other := testRecords()
	other.Services[0].Networks[0].VIP = addr("10.0.0.3")
	tables := []*Table{NewTable(testRecords()), NewTable(other)}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := new(dns.Msg)
				r.SetQuestion("web.", dns.TypeA)
				w := &recWriter{src: onFront}
				c.ServeDNS(context.Background(), w, r)
				got := rrStrings(w.msgs[0].Answer)
				if len(got) != 1 || (got[0] != "web. A 10.0.0.2" && got[0] != "web. A 10.0.0.3") {
					errs <- fmt.Errorf("answer %q during swaps", got)
					return
				}
			}
		})
	}
	for i := range 2000 {
		c.table.Store(tables[i%2])
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTableDedup: a record reached twice (names that differ only in case,
// an alias equal to a name, a task listed twice) is answered once.
func TestTableDedup(t *testing.T) {
	r := testRecords()
	r.Services[0].Names = append(r.Services[0].Names, "WEB")
	r.Services[0].Networks[0].Aliases = append(r.Services[0].Networks[0].Aliases, "web")
	r.Services[0].Tasks = append(r.Services[0].Tasks, r.Services[0].Tasks[0])
	var p atomic.Pointer[Table]
	p.Store(NewTable(r))
	c := &cluster{table: &p, next: &fakeNext{}}
	for _, tc := range []struct {
		qname string
		qtype uint16
		n     int
	}{{"web.", dns.TypeA, 2}, {"tasks.web.", dns.TypeA, 4}, {"_http._tcp.web.", dns.TypeSRV, 2}, {"10.0.0.10.in-addr.arpa.", dns.TypePTR, 1}} {
		r := new(dns.Msg)
		r.SetQuestion(tc.qname, tc.qtype)
		w := &recWriter{src: unknown}
		c.ServeDNS(context.Background(), w, r)
		if got := rrStrings(w.msgs[0].Answer); len(got) != tc.n || len(slices.Compact(got)) != tc.n {
			t.Errorf("%s: %q, want %d distinct records", tc.qname, got, tc.n)
		}
	}
}
