// Package procs finds processes by their command line through /proc, for
// cleaning up what outlived its parent (task shims, loggers) and for tests
// that check nothing did.
package procs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Find maps the PIDs of the processes whose command line (arguments joined
// by spaces) match accepts to those command lines. Processes that end while
// it reads are skipped.
func Find(match func(cmdline string) bool) map[int]string {
	out := map[int]string{}
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if !match(cmdline) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			out[pid] = cmdline
		}
	}
	return out
}
