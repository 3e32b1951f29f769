package membership

import (
	"context"
	"log/slog"
	"strings"
)

// slogWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// slog records at Debug. memberlist is chatty and its warnings are mostly
// transient (a refuted suspicion, a dropped packet); what matters to an
// operator — joins and failures — membership logs itself at Info.
type slogWriter struct {
	log *slog.Logger
}

// Write logs one line. It never fails, so memberlist never stalls on logging.
func (w slogWriter) Write(p []byte) (int, error) {
	if !w.log.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Debug(line, "memberlist_level", level)
	return len(p), nil
}
