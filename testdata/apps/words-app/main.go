// Command words-app is the demo stack's middle tier: it serves the word list
// kept by words-db and says which task and version answered.
//
//	GET  /words    {"words": [...], "served_by": ..., "version": ...}
//	POST /words    the body is one word, stored in words-db
//	GET  /random   {"word": ..., ...}: one stored word at random; 404 if none
//	GET  /healthz  "ok <version>"
//
// Environment: DB_HOST (required: words-db's host[:port], port 7000 if
// absent), PORT (default 8080), HOSTNAME (the task's name, shown as
// served_by), LISTEN_IP (one address to listen on; default all).
// `words-app -healthcheck` asks the running server's /healthz and
// exits 0 or 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v1".
var version = "dev"

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET this server's /healthz on localhost and exit 0 if it answers 200, else 1")
	flag.Parse()
	port, err := portFromEnv("8080")
	if err != nil {
		fail(2, err)
	}
	ip, err := listenIP()
	if err != nil {
		fail(2, err)
	}
	if *healthcheck {
		os.Exit(checkHealth(ip, port))
	}
	addr := net.JoinHostPort(ip, port)
	db, err := dbFromEnv()
	if err != nil {
		fail(2, err)
	}
	host := hostname()
	a := &app{db: "http://" + db, host: host,
		// No keep-alives: every request dials, so it resolves DB_HOST
		// again and never sticks to the address of a replaced task.
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", version)
	})
	mux.HandleFunc("GET /words", a.words)
	mux.HandleFunc("POST /words", a.add)
	mux.HandleFunc("GET /random", a.random)
	log.Printf("words-app %s listening on %s, database %s", version, addr, db)
	serve(&http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second})
}

type app struct {
	db     string // base URL of words-db
	host   string
	client *http.Client
}

func (a *app) words(w http.ResponseWriter, r *http.Request) {
	words, err := a.list(r.Context())
	if err != nil {
		a.reply(w, http.StatusBadGateway, map[string]any{"error": err.Error()})
		return
	}
	a.reply(w, http.StatusOK, map[string]any{"words": words})
}

func (a *app) random(w http.ResponseWriter, r *http.Request) {
	words, err := a.list(r.Context())
	if err != nil {
		a.reply(w, http.StatusBadGateway, map[string]any{"error": err.Error()})
		return
	}
	if len(words) == 0 {
		a.reply(w, http.StatusNotFound, map[string]any{"error": "no words yet: POST one to /words"})
		return
	}
	a.reply(w, http.StatusOK, map[string]any{"word": words[rand.IntN(len(words))]})
}

func (a *app) add(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, a.db+"/words", io.LimitReader(r.Body, 1024))
	if err != nil {
		a.reply(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := a.client.Do(req)
	if err != nil {
		a.reply(w, http.StatusBadGateway, map[string]any{"error": "words-db: " + err.Error()})
		return
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		a.reply(w, http.StatusBadGateway, map[string]any{"error": fmt.Sprintf("words-db answered %s with no JSON: %v", resp.Status, err)})
		return
	}
	// words-db's 201 or 400 passes through: a bad word is the client's fault.
	a.reply(w, resp.StatusCode, body)
}

func (a *app) list(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.db+"/words", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("words-db: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("words-db answered %s", resp.Status)
	}
	var words []string
	if err := json.NewDecoder(resp.Body).Decode(&words); err != nil {
		return nil, fmt.Errorf("words-db: bad word list: %w", err)
	}
	return words, nil
}

// reply adds who served the request, so a client can see the load spread
// and which version answered during a rolling update.
func (a *app) reply(w http.ResponseWriter, code int, body map[string]any) {
	body["served_by"] = a.host
	body["version"] = version
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// dbFromEnv is DB_HOST as host:port.
func dbFromEnv() (string, error) {
	v := os.Getenv("DB_HOST")
	if v == "" {
		return "", errors.New("DB_HOST is not set: set it to words-db's host[:port], e.g. DB_HOST=words-db:7000")
	}
	if strings.Contains(v, "/") {
		return "", fmt.Errorf("DB_HOST=%q: want host[:port], without a scheme or path", v)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = v, "7000"
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("DB_HOST=%q: want host[:port] with a port from 1 to 65535", v)
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

// serve runs srv until SIGTERM or SIGINT, then lets requests in flight
// finish: the orchestrator stops a task with SIGTERM while draining it.
func serve(srv *http.Server) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		fail(1, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		fail(1, err)
	}
	log.Printf("stopped")
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
	p := os.Getenv("PORT")
	if p == "" {
		p = def
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("PORT=%q: want a TCP port number from 1 to 65535", p)
	}
	return p, nil
}

// hostname names the task: the orchestrator sets HOSTNAME, a shell-less
// image has only the kernel's name otherwise.
func hostname() string {
	if h := os.Getenv("HOSTNAME"); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "words-app:", err)
	os.Exit(code)
}
