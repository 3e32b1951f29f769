// Package tasklog is the on-disk format of task output, shared by every
// runtime (which writes it) and the TaskLogs server (which reads it).
//
// A task's log is a file of JSON lines, one per output line:
//
//	{"t":"2024-05-01T10:00:00.123456789Z","s":"stdout","l":"hello"}
//
// t is when the line was read (RFC 3339, nanoseconds), s the stream, l the
// line without its newline. Text that is not valid UTF-8 is stored with
// U+FFFD in place of the invalid bytes. A line longer than MaxLine is split.
// The file is rotated when it would pass MaxSize: log.jsonl becomes
// log.jsonl.1, log.jsonl.1 becomes log.jsonl.2 and so on, keeping Files
// files in all.
package tasklog

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	// MaxSize is the size at which a log file is rotated.
	MaxSize = 10 << 20
	// Files is how many log files a task keeps, the current one included.
	Files = 3
	// MaxLine is the longest line stored as one entry.
	MaxLine = 16 << 10
)

// Stream names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Entry is one line of a task's output.
type Entry struct {
	Time   time.Time
	Stream string
	Line   []byte
}

// record is an Entry as stored.
type record struct {
	T time.Time `json:"t"`
	S string    `json:"s"`
	L string    `json:"l"`
}

// Writer appends entries to a log file and rotates it. It is safe for
// concurrent use, so stdout and stderr can share one Writer.
type Writer struct {
	path    string
	maxSize int64
	files   int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewWriter opens the log at path for appending, creating it if needed, with
// rotation at maxSize keeping files files (MaxSize and Files when zero).
func NewWriter(path string, maxSize int64, files int) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = MaxSize
	}
	if files <= 0 {
		files = Files
	}
	w := &Writer{path: path, maxSize: maxSize, files: files}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends one entry, rotating first if the file would grow past the
// limit. Each entry is one write(2), so readers never see half an entry
// unless the disk is full.
func (w *Writer) Write(e Entry) error {
	b, err := json.Marshal(record{T: e.Time.UTC(), S: e.Stream, L: string(e.Line)})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	if w.size > 0 && w.size+int64(len(b)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", w.path, err)
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	return err
}

// rotate shifts path.N-1 → path.N … path → path.1 and opens a new path.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	for i := w.files - 1; i >= 1; i-- {
		err := os.Rename(rotated(w.path, i-1), rotated(w.path, i))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return w.open()
}

// Close closes the file; later writes fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// rotated is the name of the i-th rotated file (0: the current one).
func rotated(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}
