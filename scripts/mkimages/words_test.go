package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

func TestDBKeepsWordsAcrossRestart(t *testing.T) {
	data := t.TempDir()
	ip, port := freeAddr(t)
	db := start(t, "words-db", ip, port, "DATA_DIR="+data)
	for _, w := range []string{"alpha", "beta"} {
		must(t, http.StatusCreated, "POST", db.URL+"/words", w+"\n", "", "", nil)
	}
	for _, bad := range []string{"", "two words", strings.Repeat("x", 65)} {
		must(t, http.StatusBadRequest, "POST", db.URL+"/words", bad, "", "", nil)
	}
	var v map[string]string
	must(t, http.StatusOK, "GET", db.URL+"/version", "", "", "", &v)
	if v["version"] != testVersion {
		t.Fatalf("GET /version = %v, want version %s", v, testVersion)
	}
	if code := db.stop(); code != 0 {
		t.Fatalf("words-db exited %d after SIGTERM, want 0", code)
	}

	db = start(t, "words-db", ip, port, "DATA_DIR="+data)
	var words []string
	must(t, http.StatusOK, "GET", db.URL+"/words", "", "", "", &words)
	if want := []string{"alpha", "beta"}; !slices.Equal(words, want) {
		t.Fatalf("after a restart GET /words = %q, want %q", words, want)
	}
}

func TestAppReadsAndWritesThroughDB(t *testing.T) {
	dbIP, dbPort := freeAddr(t)
	start(t, "words-db", dbIP, dbPort, "DATA_DIR="+t.TempDir())
	ip, port := freeAddr(t)
	app := start(t, "words-app", ip, port, "DB_HOST="+net.JoinHostPort(dbIP, dbPort), "HOSTNAME=task-1")

	var empty map[string]any
	must(t, http.StatusNotFound, "GET", app.URL+"/random", "", "", "", &empty)
	var added map[string]any
	must(t, http.StatusCreated, "POST", app.URL+"/words", "gamma", "", "", &added)
	if added["word"] != "gamma" || added["served_by"] != "task-1" || added["version"] != testVersion {
		t.Fatalf("POST /words = %v, want word gamma served by task-1 at %s", added, testVersion)
	}
	must(t, http.StatusBadRequest, "POST", app.URL+"/words", "two words", "", "", nil)
	var list struct {
		Words    []string `json:"words"`
		ServedBy string   `json:"served_by"`
	}
	must(t, http.StatusOK, "GET", app.URL+"/words", "", "", "", &list)
	if !slices.Equal(list.Words, []string{"gamma"}) || list.ServedBy != "task-1" {
		t.Fatalf("GET /words = %+v, want [gamma] served by task-1", list)
	}
	var random map[string]any
	must(t, http.StatusOK, "GET", app.URL+"/random", "", "", "", &random)
	if random["word"] != "gamma" {
		t.Fatalf("GET /random = %v, want gamma", random)
	}

	// A database that is not there is the gateway's fault, and says so.
	deadIP, deadPort := freeAddr(t)
	ip2, port2 := freeAddr(t)
	orphan := start(t, "words-app", ip2, port2, "DB_HOST="+net.JoinHostPort(deadIP, deadPort))
	body := must(t, http.StatusBadGateway, "GET", orphan.URL+"/words", "", "", "", nil)
	if !strings.Contains(body, "words-db") {
		t.Fatalf("GET /words with no database = %q, want an error naming words-db", body)
	}
}

func TestWebNeedsLoginAndProxiesToApp(t *testing.T) {
	dbIP, dbPort := freeAddr(t)
	start(t, "words-db", dbIP, dbPort, "DATA_DIR="+t.TempDir())
	appIP, appPort := freeAddr(t)
	start(t, "words-app", appIP, appPort, "DB_HOST="+net.JoinHostPort(dbIP, dbPort), "HOSTNAME=app-1")
	ip, port := freeAddr(t)
	web := start(t, "words-web", ip, port, "APP_NAME="+net.JoinHostPort(appIP, appPort), "USERS=alice:secret,bob:hunter2")

	if body := must(t, http.StatusOK, "GET", web.URL+"/healthz", "", "", "", nil); body != "ok "+testVersion+"\n" {
		t.Fatalf("GET /healthz = %q, want %q", body, "ok "+testVersion+"\n")
	}
	for _, path := range []string{"/", "/api/words"} {
		must(t, http.StatusUnauthorized, "GET", web.URL+path, "", "", "", nil)
		must(t, http.StatusUnauthorized, "GET", web.URL+path, "", "alice", "hunter2", nil)
		must(t, http.StatusUnauthorized, "GET", web.URL+path, "", "carol", "secret", nil)
	}
	must(t, http.StatusCreated, "POST", web.URL+"/api/words", "delta", "bob", "hunter2", nil)
	var list struct {
		Words    []string `json:"words"`
		ServedBy string   `json:"served_by"`
	}
	must(t, http.StatusOK, "GET", web.URL+"/api/words", "", "alice", "secret", &list)
	if !slices.Equal(list.Words, []string{"delta"}) || list.ServedBy != "app-1" {
		t.Fatalf("GET /api/words = %+v, want [delta] served by app-1", list)
	}
	page := must(t, http.StatusOK, "GET", web.URL+"/", "", "alice", "secret", nil)
	if !strings.Contains(page, "words-web "+testVersion) || !strings.Contains(page, "api/words") {
		t.Fatalf("GET / is not the words page at %s:\n%s", testVersion, page)
	}

	// With no USERS the site is open.
	ip2, port2 := freeAddr(t)
	open := start(t, "words-web", ip2, port2, "APP_NAME="+net.JoinHostPort(appIP, appPort))
	must(t, http.StatusOK, "GET", open.URL+"/api/words", "", "", "", nil)
}

// TestWebResolvesAppNameEveryRequest points APP_NAME at a name only a test
// DNS server knows, runs two apps on the same port at two addresses, and
// changes the server's answer: the very next request must reach the other
// app, with the first one still running, so neither a cached address nor a
// kept connection can be what serves it.
func TestWebResolvesAppNameEveryRequest(t *testing.T) {
	resolver := newDNS(t, "words-app.shoal.test.")
	dbIP, dbPort := freeAddr(t)
	start(t, "words-db", dbIP, dbPort, "DATA_DIR="+t.TempDir())
	db := "DB_HOST=" + net.JoinHostPort(dbIP, dbPort)
	ipA, port := freeAddr(t)
	ipB, _ := freeAddr(t)
	start(t, "words-app", ipA, port, db, "HOSTNAME=app-a")
	start(t, "words-app", ipB, port, db, "HOSTNAME=app-b")
	ip, webPort := freeAddr(t)
	web := start(t, "words-web", ip, webPort, "APP_NAME=words-app.shoal.test:"+port, "RESOLVER="+resolver.addr)

	servedBy := func() string {
		var list struct {
			ServedBy string `json:"served_by"`
		}
		must(t, http.StatusOK, "GET", web.URL+"/api/words", "", "", "", &list)
		return list.ServedBy
	}
	for i, step := range []struct{ ip, want string }{{ipA, "app-a"}, {ipA, "app-a"}, {ipB, "app-b"}, {ipA, "app-a"}, {ipB, "app-b"}} {
		resolver.answer(step.ip)
		before := resolver.queries.Load()
		if got := servedBy(); got != step.want {
			t.Fatalf("request %d with the name at %s was served by %s, want %s", i, step.ip, got, step.want)
		}
		if resolver.queries.Load() == before {
			t.Fatalf("request %d asked no DNS query", i)
		}
	}

	// A name that does not resolve is a 502 naming APP_NAME.
	resolver.answer("")
	body := must(t, http.StatusBadGateway, "GET", web.URL+"/api/words", "", "", "", nil)
	if !strings.Contains(body, "APP_NAME") {
		t.Fatalf("GET /api/words with the name unresolvable = %q, want an error naming APP_NAME", body)
	}
}

// testDNS answers A queries for one name with an address the test sets.
type testDNS struct {
	addr    string
	mu      sync.Mutex
	ip      string
	queries atomic.Int64
}

func newDNS(t *testing.T, name string) *testDNS {
	t.Helper()
	d := &testDNS{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		d.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		d.mu.Lock()
		ip := d.ip
		d.mu.Unlock()
		switch {
		case len(q.Question) != 1 || !strings.EqualFold(q.Question[0].Name, name) || ip == "":
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
				A:   net.ParseIP(ip),
			})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *testDNS) answer(ip string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ip = ip
}

func TestHealthcheckFlag(t *testing.T) {
	ip, port := freeAddr(t)
	start(t, "words-web", ip, port, "APP_NAME=nowhere.invalid", "USERS=alice:secret")
	env := []string{"PORT=" + port, "LISTEN_IP=" + ip}
	if code, out := runExit(t, "words-web", []string{"-healthcheck"}, env...); code != 0 {
		t.Fatalf("words-web -healthcheck against a running server (behind auth) exited %d, want 0:\n%s", code, out)
	}
	deadIP, deadPort := freeAddr(t)
	for _, app := range []string{"words-db", "words-app", "words-web"} {
		code, out := runExit(t, app, []string{"-healthcheck"}, "PORT="+deadPort, "LISTEN_IP="+deadIP)
		if code != 1 || !strings.Contains(out, "unhealthy") {
			t.Fatalf("%s -healthcheck with no server exited %d, want 1 saying unhealthy:\n%s", app, code, out)
		}
	}
}

func TestBadConfigExitsNamingTheSetting(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app  string
		env  []string
		code int
		says string
	}{
		{"words-app", nil, 2, "DB_HOST is not set"},
		{"words-app", []string{"DB_HOST=http://db:7000"}, 2, "DB_HOST"},
		{"words-app", []string{"DB_HOST=db:99999"}, 2, "DB_HOST"},
		{"words-web", nil, 2, "APP_NAME is not set"},
		{"words-web", []string{"APP_NAME=app", "USERS=alice"}, 2, "USERS entry"},
		{"words-web", []string{"APP_NAME=app", "RESOLVER=dns/53"}, 2, "RESOLVER"},
		{"words-db", []string{"PORT=http"}, 2, "PORT"},
		{"words-db", []string{"LISTEN_IP=localhost"}, 2, "LISTEN_IP"},
		{"words-db", []string{"DATA_DIR=" + notADir}, 1, "DATA_DIR"},
	} {
		code, out := runExit(t, tc.app, nil, tc.env...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("%s with %q exited %d, want %d saying %q:\n%s", tc.app, tc.env, code, tc.code, tc.says, out)
		}
	}
}
