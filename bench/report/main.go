// Command report turns the raw output of bench/run.sh (the standard
// `go test -bench` format, one "command:" line before each command's output)
// into docs/benchmarks.md: the machine, the date, and for each figure the
// exact command, the median and min–max over the runs, the target and
// whether it is met.
//
//	go run ./bench/report -mode quick -raw bench/results/quick.txt -out docs/benchmarks.md
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

func main() {
	mode := flag.String("mode", "", "quick or full, as given to bench/run.sh")
	raw := flag.String("raw", "", "raw benchmark output written by bench/run.sh")
	out := flag.String("out", "docs/benchmarks.md", "Markdown file to write")
	flag.Parse()
	if err := run(*mode, *raw, *out); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(mode, raw, out string) error {
	if raw == "" {
		return fmt.Errorf("-raw: give the raw output file written by bench/run.sh")
	}
	f, err := os.Open(raw)
	if err != nil {
		return fmt.Errorf("-raw: %w", err)
	}
	defer f.Close()
	groups, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", raw, err)
	}
	var buf bytes.Buffer
	render(&buf, report{Mode: mode, Raw: raw, Machine: machine(groups), Groups: groups, Data: newData(groups)})
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// machineInfo describes where the benchmarks ran.
type machineInfo struct {
	CPUs    int
	CPU     string
	Memory  string
	Kernel  string
	Go      string
	Commit  string
	Date    string
	Loadavg string
}

func machine(groups []*group) machineInfo {
	m := machineInfo{
		CPUs:   runtime.NumCPU(),
		Memory: memTotal(),
		Kernel: strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		Go:     runtime.Version(),
		Commit: gitCommit(),
	}
	for _, g := range groups {
		if m.CPU == "" {
			m.CPU = strings.TrimSpace(g.Config["cpu"])
		}
		if g.Command != "" { // a group's own date and commit are shown with its figures
			continue
		}
		if m.Date == "" {
			m.Date = g.Config["date"]
		}
		if v := g.Config["go-version"]; v != "" {
			m.Go = v
		}
		if v := g.Config["commit"]; v != "" {
			m.Commit = v
		}
	}
	return m
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return string(b)
}

// memTotal is MemTotal from /proc/meminfo in GiB.
func memTotal() string {
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb); err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

// gitCommit is HEAD's hash, marked when the work tree has changes that the
// benchmarked code may include. The "commit:" line bench/run.sh records at
// the start of the run takes precedence.
func gitCommit() string {
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (not a git work tree)"
	}
	commit := strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=normal").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += " plus uncommitted changes in the work tree"
	}
	return commit
}
