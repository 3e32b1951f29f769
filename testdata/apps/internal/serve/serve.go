// Package serve is what the demo apps (words-db, words-app, words-web) share:
// where to listen (PORT, LISTEN_IP), the -healthcheck mode their shell-less
// images use as HEALTHCHECK, the /healthz answer, serving until SIGTERM, and
// checking host[:port] settings. It uses only the standard library, so the
// apps stay static binaries with nothing but Go's runtime in them.
package serve

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// App is one demo app: Name prefixes its fatal errors, Version is what
// /healthz reports.
type App struct {
	Name    string
	Version string
}

// Addr parses the command line and returns the host:port to listen on:
// LISTEN_IP (empty means all addresses) and PORT (defPort if unset). With
// -healthcheck it instead asks the running server's /healthz and exits 0 if
// it answers 200, else 1. A bad setting exits 2.
func (a App) Addr(defPort string) string {
	healthcheck := flag.Bool("healthcheck", false, "GET this server's /healthz on localhost and exit 0 if it answers 200, else 1")
	flag.Parse()
	port, err := portFromEnv(defPort)
	if err != nil {
		a.Fail(2, err)
	}
	ip, err := listenIP()
	if err != nil {
		a.Fail(2, err)
	}
	if *healthcheck {
		os.Exit(checkHealth(ip, port))
	}
	return net.JoinHostPort(ip, port)
}

// Mux is a new mux that already answers GET /healthz with "ok <version>".
func (a App) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", a.Version)
	})
	return mux
}

// Run serves h on addr until SIGTERM or SIGINT, then lets requests in
// flight finish: the orchestrator stops a task with SIGTERM while draining
// it. It exits 1 if the server cannot listen or shut down.
func (a App) Run(addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		a.Fail(1, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		a.Fail(1, err)
	}
	log.Printf("stopped")
}

// Fail prints err after the app's name and exits with code.
func (a App) Fail(code int, err error) {
	fmt.Fprintln(os.Stderr, a.Name+":", err)
	os.Exit(code)
}

// EnvOr is the environment variable key, or def if it is unset or empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Hostname names the task: the orchestrator sets HOSTNAME, a shell-less
// image has only the kernel's name otherwise.
func Hostname() string {
	if h := os.Getenv("HOSTNAME"); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// HostEnv is the environment variable key, a host[:port], as host:port with
// defPort added if it has none. An unset or bad value exits 2 naming key;
// example is a good value, shown when key is unset.
func (a App) HostEnv(key, defPort, example string) string {
	hp, err := hostPort(key, os.Getenv(key), defPort, example)
	if err != nil {
		a.Fail(2, err)
	}
	return hp
}

// hostPort checks v, the host[:port] setting named key.
func hostPort(key, v, defPort, example string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("%s is not set: set it to host[:port], e.g. %s=%s", key, key, example)
	}
	if strings.Contains(v, "/") {
		return "", fmt.Errorf("%s=%q: want host[:port], without a scheme or path", key, v)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = v, defPort
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%s=%q: want host[:port] with a port from 1 to 65535", key, v)
	}
	return net.JoinHostPort(host, port), nil
}

// checkHealth is the image's HEALTHCHECK: the image has no shell or curl.
func checkHealth(ip, port string) int {
	if ip == "" {
		ip = "127.0.0.1"
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy: /healthz answered", resp.Status)
		return 1
	}
	return 0
}

// listenIP is LISTEN_IP, the one address to listen on; empty means all.
func listenIP() (string, error) {
	v := os.Getenv("LISTEN_IP")
	if v != "" && net.ParseIP(v) == nil {
		return "", fmt.Errorf("LISTEN_IP=%q: want an IP address, or leave it unset to listen on all", v)
	}
	return v, nil
}

func portFromEnv(def string) (string, error) {
	p := EnvOr("PORT", def)
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("PORT=%q: want a TCP port number from 1 to 65535", p)
	}
	return p, nil
}
