package tasklog

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PollInterval is how often a follower looks for new lines.
const PollInterval = 100 * time.Millisecond

// ReadOptions select what Read delivers.
type ReadOptions struct {
	// Tail is the number of most recent lines to deliver; negative means all.
	Tail int
	// Since skips lines written before it (zero: none).
	Since time.Time
	// Follow keeps delivering new lines, across rotations, until ctx ends or
	// Stop returns true.
	Follow bool
	// Stop, when set, is asked at every poll whether following should end
	// (the task is gone); Read then delivers what is left and returns.
	Stop func() bool
}

// Read delivers the log at path to fn, oldest first, as opts select. A
// missing log is empty (and followed until it appears). Lines that do not
// decode are skipped. An error from fn ends Read with that error.
func Read(ctx context.Context, path string, opts ReadOptions, fn func(Entry) error) error {
	files := openAll(path)
	defer func() {
		for _, f := range files {
			f.close()
		}
	}()
	emit := func(raw []byte) error {
		e, ok := decode(raw)
		if !ok || (!opts.Since.IsZero() && e.Time.Before(opts.Since)) {
			return nil
		}
		return fn(e)
	}

	// History: every file to its end. The newest file's unfinished last line
	// is left for the follower; when not following it is all there is.
	ring := tail{n: opts.Tail}
	keep := func(raw []byte) error {
		if opts.Tail < 0 {
			return emit(raw)
		}
		ring.add(raw)
		return nil
	}
	for i, f := range files {
		final := i < len(files)-1 || !opts.Follow
		for {
			raw, err := f.next()
			if err != nil {
				break
			}
			if err := keep(raw); err != nil {
				return err
			}
		}
		if final && len(f.partial) > 0 {
			raw := f.partial
			f.partial = nil
			if err := keep(raw); err != nil {
				return err
			}
		}
	}
	for _, raw := range ring.ordered() {
		if err := emit(raw); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}

	var cur *logFile
	if len(files) > 0 {
		cur = files[len(files)-1]
	}
	for {
		// Asked first, so that lines written before the task went away are
		// still delivered by the drain below.
		stopping := opts.Stop != nil && opts.Stop()
		if cur != nil {
			if err := cur.drain(emit, false); err != nil {
				return err
			}
		}
		// A new current file means cur was rotated away: finish it, then
		// read the files written since, and follow the newest.
		if ino, ok := inode(path); ok && (cur == nil || ino != cur.ino) {
			if cur != nil {
				if err := cur.drain(emit, true); err != nil {
					return err
				}
			}
			newer := openNewer(path, cur)
			if cur != nil {
				cur.close()
			}
			for _, f := range newer[:len(newer)-1] {
				err := f.drain(emit, true)
				f.close()
				if err != nil {
					return err
				}
			}
			cur = newer[len(newer)-1]
			files = append(files, cur) // closed by the deferred cleanup
			continue
		}
		if stopping {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(PollInterval):
		}
	}
}

// logFile is an open log file read line by line.
type logFile struct {
	f       *os.File
	ino     uint64
	r       *bufio.Reader
	partial []byte
	closed  bool
}

func openFile(path string) *logFile {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	return &logFile{f: f, ino: inodeOf(st), r: bufio.NewReaderSize(f, 64<<10)}
}

// next returns the next complete line, or an error (io.EOF) when there is
// none yet; an unfinished line is kept in partial.
func (l *logFile) next() ([]byte, error) {
	b, err := l.r.ReadBytes('\n')
	if err != nil {
		l.partial = append(l.partial, b...)
		return nil, err
	}
	line := b[:len(b)-1]
	if len(l.partial) > 0 {
		line = append(l.partial, line...)
		l.partial = nil
	}
	return line, nil
}

// drain emits every complete line; final also emits an unfinished last
// line, for a file nobody writes to any more.
func (l *logFile) drain(emit func([]byte) error, final bool) error {
	for {
		raw, err := l.next()
		if err != nil {
			break
		}
		if err := emit(raw); err != nil {
			return err
		}
	}
	if final && len(l.partial) > 0 {
		raw := l.partial
		l.partial = nil
		return emit(raw)
	}
	return nil
}

func (l *logFile) close() {
	if !l.closed {
		l.closed = true
		l.f.Close()
	}
}

// openAll opens the log's files, oldest first.
func openAll(path string) []*logFile {
	var out []*logFile
	for _, name := range names(path) {
		if f := openFile(name); f != nil {
			out = append(out, f)
		}
	}
	return out
}

// openNewer opens the files written after prev (all of them if prev is nil
// or no longer found), oldest first; the current file is always last.
func openNewer(path string, prev *logFile) []*logFile {
	all := openAll(path)
	start := 0
	if prev != nil {
		for i, f := range all {
			if f.ino == prev.ino {
				start = i + 1
			}
		}
	}
	for _, f := range all[:start] {
		f.close()
	}
	newer := all[start:]
	if len(newer) == 0 || newer[len(newer)-1].ino != lastInode(path) {
		// Lost a race with another rotation; the current file is enough.
		for _, f := range newer {
			f.close()
		}
		newer = nil
		if f := openFile(path); f != nil {
			newer = append(newer, f)
		}
	}
	if len(newer) == 0 {
		// The file vanished between stat and open: an empty stand-in that
		// the next poll replaces.
		newer = append(newer, &logFile{r: bufio.NewReader(strings.NewReader("")), closed: true})
	}
	return newer
}

func lastInode(path string) uint64 {
	ino, _ := inode(path)
	return ino
}

// names lists the log's files that exist, oldest first.
func names(path string) []string {
	matches, _ := filepath.Glob(escapeGlob(path) + ".*")
	type numbered struct {
		n    int
		name string
	}
	var rot []numbered
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(m, path+"."))
		if err == nil && n > 0 {
			rot = append(rot, numbered{n, m})
		}
	}
	sort.Slice(rot, func(i, j int) bool { return rot[i].n > rot[j].n })
	var out []string
	for _, r := range rot {
		out = append(out, r.name)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

func inode(path string) (uint64, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	return inodeOf(st), true
}

func inodeOf(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

func decode(raw []byte) (Entry, bool) {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil || r.T.IsZero() {
		return Entry{}, false
	}
	return Entry{Time: r.T, Stream: r.S, Line: []byte(r.L)}, true
}

// tail keeps the last n lines added (all of them when n is negative).
type tail struct {
	n     int
	lines [][]byte
	next  int
}

func (t *tail) add(raw []byte) {
	switch {
	case t.n == 0:
	case t.n < 0 || len(t.lines) < t.n:
		t.lines = append(t.lines, raw)
	default:
		t.lines[t.next] = raw
		t.next = (t.next + 1) % t.n
	}
}

func (t *tail) ordered() [][]byte {
	if t.n <= 0 || len(t.lines) < t.n {
		return t.lines
	}
	return append(append([][]byte{}, t.lines[t.next:]...), t.lines[:t.next]...)
}
