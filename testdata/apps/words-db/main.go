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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"shoal/testdata/apps/internal/serve"
)

// version is set at build time: -ldflags "-X main.version=v1".
var version = "dev"

// maxWord bounds one word, so a stray upload cannot fill the volume.
const maxWord = 64

var app = serve.App{Name: "words-db", Version: version}

func main() {
	addr := app.Addr("7000")
	dir := serve.EnvOr("DATA_DIR", "/data")
	st, err := open(filepath.Join(dir, "words.txt"))
	if err != nil {
		app.Fail(1, fmt.Errorf("DATA_DIR=%s: %w (set DATA_DIR to a writable directory, e.g. a volume)", dir, err))
	}
	host := serve.Hostname()
	mux := app.Mux()
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
	app.Run(addr, mux)
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
