// Command words-db is the demo stack's database: a word list kept in memory
// and appended, one word a line, to $DATA_DIR/words.txt. Every write is
// fsynced before it is acknowledged, so a word survives a restart of the
// container as long as DATA_DIR is a volume.
//
//	GET  /words    the words, a JSON list, oldest first
//	POST /words    the request body is one word; 201 once it is on disk
//	GET  /version  {"version": ..., "host": ...}
//	GET  /healthz  "ok <version>"
//
// Environment: PORT (default 7000), DATA_DIR (default /data), LISTEN_IP (one
// address to listen on; default all).
// `words-db -healthcheck` asks the running server's /healthz and exits 0 or 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v1".
var version = "dev"

// maxWord bounds one word, so a stray upload cannot fill the volume.
const maxWord = 64

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET this server's /healthz on localhost and exit 0 if it answers 200, else 1")
	flag.Parse()
	port, err := portFromEnv("7000")
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
	dir := envOr("DATA_DIR", "/data")
	st, err := open(filepath.Join(dir, "words.txt"))
	if err != nil {
		fail(1, fmt.Errorf("DATA_DIR=%s: %w (set DATA_DIR to a writable directory, e.g. a volume)", dir, err))
	}
	host := hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", version)
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version, "host": host})
	})
	mux.HandleFunc("GET /words", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, st.list())
	})
	mux.HandleFunc("POST /words", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxWord+2))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		word, err := validWord(string(body))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := st.add(word); err != nil {
			log.Printf("words-db: store %q: %v", word, err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not store the word: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"word": word})
	})
	log.Printf("words-db %s listening on %s, data in %s (%d words)", version, addr, dir, len(st.list()))
	serve(&http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second})
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

// store is the word list and the file that makes it durable.
type store struct {
	mu    sync.Mutex
	f     *os.File
	words []string
}

func open(path string) (*store, error) {
	st := &store{words: []string{}}
	if data, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			if w := strings.TrimSpace(sc.Text()); w != "" {
				st.words = append(st.words, w)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	// The directory entry of a new file must be durable too.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	st.f = f
	return st, nil
}

func (st *store) add(word string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, err := st.f.WriteString(word + "\n"); err != nil {
		return err
	}
	if err := st.f.Sync(); err != nil {
		return err
	}
	st.words = append(st.words, word)
	return nil
}

func (st *store) list() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]string{}, st.words...)
}

func validWord(s string) (string, error) {
	w := strings.TrimSpace(s)
	switch {
	case w == "":
		return "", errors.New("the body must be a word; it is empty")
	case len(w) > maxWord:
		return "", fmt.Errorf("a word has at most %d bytes", maxWord)
	case strings.ContainsAny(w, " \t\r\n"):
		return "", errors.New("the body must be one word, without spaces or line breaks")
	}
	return w, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
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
	p := envOr("PORT", def)
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("PORT=%q: want a TCP port number from 1 to 65535", p)
	}
	return p, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
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
	fmt.Fprintln(os.Stderr, "words-db:", err)
	os.Exit(code)
}
