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
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"time"

	"shoal/testdata/apps/internal/serve"
)

// version is set at build time: -ldflags "-X main.version=v1".
var version = "dev"

// server is this program as the demo apps' shared code sees it (app is the
// handlers).
var server = serve.App{Name: "words-app", Version: version}

func main() {
	addr := server.Addr("8080")
	db := server.HostEnv("DB_HOST", "7000", "words-db:7000")
	a := &app{db: "http://" + db, host: serve.Hostname(),
		// No keep-alives: every request dials, so it resolves DB_HOST
		// again and never sticks to the address of a replaced task.
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	mux := server.Mux()
	mux.HandleFunc("GET /words", a.words)
	mux.HandleFunc("POST /words", a.add)
	mux.HandleFunc("GET /random", a.random)
	log.Printf("words-app %s listening on %s, database %s", version, addr, db)
	server.Run(addr, mux)
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
