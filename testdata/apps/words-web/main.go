// Command words-web is the demo stack's front: a small HTML page at / and a
// proxy from /api/* to words-app, behind HTTP basic auth.
//
// It resolves APP_NAME by DNS for every request and opens a new connection
// each time, so when the orchestrator replaces words-app's tasks the next
// request goes to a live one: a stale address never sticks.
//
// Environment: APP_NAME (required: words-app's host[:port], port 8080 if
// absent), PORT (default 80), USERS ("user:password[,user2:password2]"; no
// USERS means no auth), RESOLVER (a DNS server's host[:port] used for every
// lookup instead of /etc/resolv.conf's), LISTEN_IP (one address to listen
// on; default all). /healthz is always open.
// `words-web -healthcheck` asks the running server's /healthz and exits 0 or 1.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"time"

	"shoal/testdata/apps/internal/serve"
)

// version is set at build time: -ldflags "-X main.version=v1".
var version = "dev"

var app = serve.App{Name: "words-web", Version: version}

func main() {
	addr := app.Addr("80")
	appAddr := app.HostEnv("APP_NAME", "8080", "words-app:8080")
	users, err := parseUsers(os.Getenv("USERS"))
	if err != nil {
		app.Fail(2, err)
	}
	res := net.DefaultResolver
	if os.Getenv("RESOLVER") != "" {
		res = resolverAt(app.HostEnv("RESOLVER", "53", "127.0.0.11:53"))
	}

	mux := app.Mux()
	mux.Handle("/", basicAuth(users, site(newProxy(appAddr, res))))
	log.Printf("words-web %s listening on %s, app %s, %d users", version, addr, appAddr, len(users))
	app.Run(addr, mux)
}

// site is everything behind the login: the page and the API.
func site(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page)
	mux.Handle("/api/", http.StripPrefix("/api", api))
	return mux
}

// newProxy forwards to the app at addr (host:port), looking host up with res
// on every request.
func newProxy(addr string, res *net.Resolver) http.Handler {
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	transport := &http.Transport{
		DisableKeepAlives: true, // a kept connection would pin an old address
		DialContext: func(ctx context.Context, network, hp string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(hp)
			if err != nil {
				return nil, err
			}
			ips, err := res.LookupHost(ctx, host)
			if err != nil {
				return nil, err
			}
			// Random order spreads requests over DNS round-robin tasks.
			rand.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
			var errs []error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip, port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		ResponseHeaderTimeout: 10 * time.Second,
	}
	host := serve.Hostname()
	return &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			pr.Out.Host = addr
			pr.Out.Header.Del("Authorization") // the app needs no password
			pr.SetXForwarded()
		},
		ModifyResponse: func(r *http.Response) error {
			r.Header.Set("X-Words-Web", host+" "+version)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Printf("proxy %s %s to %s: %v", r.Method, r.URL.Path, addr, err)
			http.Error(w, fmt.Sprintf("words-web: cannot reach APP_NAME %s: %v", addr, err), http.StatusBadGateway)
		},
	}
}

// resolverAt sends every DNS query to the server at addr. Go's resolver keeps
// no cache, so each lookup asks the server again.
func resolverAt(addr string) *net.Resolver {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// parseUsers reads USERS: "user:password[,user2:password2]".
func parseUsers(v string) (map[string]string, error) {
	users := map[string]string{}
	if strings.TrimSpace(v) == "" {
		return users, nil
	}
	for _, entry := range strings.Split(v, ",") {
		user, pw, ok := strings.Cut(strings.TrimSpace(entry), ":")
		if !ok || user == "" || pw == "" {
			return nil, fmt.Errorf("USERS entry %q: want user:password (entries separated by commas)", entry)
		}
		users[user] = pw
	}
	return users, nil
}

// basicAuth lets a request through if it carries one of users' passwords;
// with no users it lets everything through.
func basicAuth(users map[string]string, next http.Handler) http.Handler {
	if len(users) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		want, known := users[user]
		// Compare even for an unknown user, so timing does not tell users apart.
		match := subtle.ConstantTimeCompare([]byte(pw), []byte(want)) == 1
		if !ok || !known || !match {
			w.Header().Set("WWW-Authenticate", `Basic realm="words", charset="UTF-8"`)
			http.Error(w, "words-web: log in with a user from USERS", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
