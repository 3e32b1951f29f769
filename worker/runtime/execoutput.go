package runtime

import (
	"bytes"
	"sync"
)

// MaxExecOutput bounds the output an Execer returns: a health check's
// output is for a status message, and a chatty check must not hold memory.
const MaxExecOutput = 4 << 10

// ExecOutput collects an exec'd command's combined output: it keeps the
// first MaxExecOutput bytes and drops the rest without failing the writer
// (a command must not die of SIGPIPE because its output was long). It is
// safe for the concurrent writes of stdout and stderr.
type ExecOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *ExecOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := MaxExecOutput - o.buf.Len(); room > 0 {
		o.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Bytes returns a copy of what was kept.
func (o *ExecOutput) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]byte(nil), o.buf.Bytes()...)
}
