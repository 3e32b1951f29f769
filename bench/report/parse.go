package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// group is the output of one `go test -bench` command, as bench/run.sh
// records it: a "command:" configuration line, then more configuration
// lines and the benchmark results.
type group struct {
	Command string
	// Config holds the group's "key: value" lines (goos, cpu, date,
	// loadavg-before, …), the last value of each key.
	Config  map[string]string
	Results []result
	// Failed lists the benchmarks that printed "--- FAIL".
	Failed []string
}

// result is one line of benchmark output: one run of one benchmark.
type result struct {
	Name    string // without the -GOMAXPROCS suffix
	Iters   int
	Metrics map[string]float64 // unit -> value
}

var (
	// configLine is the benchmark format's "key: value" line: a key that
	// starts with a lower-case letter and holds no space or upper case.
	configLine = regexp.MustCompile(`^([a-z][^\sA-Z:]*):\s*(.*)$`)
	procSuffix = regexp.MustCompile(`-\d+$`)
)

// parse reads the output of bench/run.sh: the standard `go test -bench`
// format, split into groups by "command:" lines. Results before the first
// "command:" line go to a group with an empty Command.
func parse(r io.Reader) ([]*group, error) {
	var groups []*group
	cur := func() *group {
		if len(groups) == 0 {
			groups = append(groups, &group{Config: map[string]string{}})
		}
		return groups[len(groups)-1]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	// pending is the name of a result line cut short: another process wrote
	// into the terminal after the name and before the figures, which follow
	// on a line of their own ("       1\t  6.1 p99-ms ...").
	pending := ""
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if pending != "" && strings.TrimLeft(text, " \t") != text {
			res, ok, err := parseResult(pending + text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if ok {
				g := cur()
				g.Results = append(g.Results, res)
				pending = ""
				continue
			}
		}
		switch {
		case strings.HasPrefix(text, "Benchmark"):
			res, ok, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			pending = ""
			if ok {
				g := cur()
				g.Results = append(g.Results, res)
			} else if fields := strings.Fields(text); len(fields) > 0 {
				pending = fields[0] + " "
			}
		case strings.HasPrefix(text, "--- FAIL: Benchmark"):
			g := cur()
			g.Failed = append(g.Failed, procSuffix.ReplaceAllString(strings.TrimSpace(strings.TrimPrefix(text, "--- FAIL: ")), ""))
		default:
			m := configLine.FindStringSubmatch(text)
			if m == nil {
				continue
			}
			if m[1] == "command" {
				groups = append(groups, &group{Command: m[2], Config: map[string]string{}})
				continue
			}
			cur().Config[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return groups, nil
}

// parseResult parses "BenchmarkX/sub-2  1  123 ns/op  4.5 unit ...". ok is
// false for a line that only names a benchmark (verbose output, or a run
// whose result follows its log lines).
func parseResult(line string) (res result, ok bool, err error) {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return result{}, false, nil
	}
	iters, err := strconv.Atoi(fields[1])
	if err != nil {
		return result{}, false, nil
	}
	if len(fields)%2 != 0 {
		return result{}, false, fmt.Errorf("benchmark result %q: values and units do not pair up", line)
	}
	res = result{Name: procSuffix.ReplaceAllString(fields[0], ""), Iters: iters, Metrics: map[string]float64{}}
	for i := 2; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return result{}, false, fmt.Errorf("benchmark result %q: value %q: %w", line, fields[i], err)
		}
		res.Metrics[fields[i+1]] = v
	}
	return res, true, nil
}
