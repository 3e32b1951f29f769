#!/usr/bin/env bash
# Runs shoal's benchmarks and rewrites docs/benchmarks.md from their output.
#
#   bench/run.sh quick   5 failover samples, 3 runs of the rest, one scale-up
#                        to 10,000 tasks (several minutes)
#   bench/run.sh full    11 failover samples, 5 runs of the rest, three
#                        scale-ups to 100,000 tasks
#
# Each benchmark group is one `go test -bench` command; its exact command line
# and the load average before and after it are written into the raw output
# (bench/results/MODE.txt, standard benchmark format with extra "key: value"
# lines), which bench/report turns into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
  quick) failover=5 runs=3 scale_tasks=10000 scale_runs=1 timeout=15m ;;
  full) failover=11 runs=5 scale_tasks=100000 scale_runs=3 timeout=40m ;;
  *)
    echo "usage: bench/run.sh quick|full" >&2
    exit 2
    ;;
esac

GO=${GO:-go}
raw=bench/results/$mode.txt

# One shoal binary for every group (internal/testutil uses it through
# SHOAL_TEST_BINARY), so all figures measure the same build even if the
# tree changes while the benchmarks run.
bindir=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-bin.XXXXXX")
trap 'rm -rf "$bindir"' EXIT
"$GO" build -o "$bindir/shoal" ./cmd/shoal
export SHOAL_TEST_BINARY=$bindir/shoal

mkdir -p bench/results
: >"$raw"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The run's own outputs (this raw file, the report) do not count as changes.
if [ -n "$(git status --porcelain -- . ':!bench/results' ':!docs/benchmarks.md' 2>/dev/null)" ]; then
  commit="$commit plus uncommitted changes in the work tree"
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "go-version: $($GO env GOVERSION)"
  echo "commit: $commit"
} >>"$raw"

# bench NAME COUNT BENCHTIME [PACKAGE]: runs one benchmark group (of
# ./bench/ unless PACKAGE is given), appending to $raw. NAME may name a
# sub-benchmark, e.g. BenchmarkX/size=10: only that one runs.
bench() {
  local pattern="^${1//\//\$/^}\$" pkg=${4:-./bench/}
  local cmd=("$GO" test -run '^$' -bench "$pattern" -benchtime "$3" -count "$2" -timeout "$timeout" "$pkg")
  echo "==> ${cmd[*]}" >&2
  {
    printf 'command: %s test -run '"'"'^$'"'"' -bench '"'"'%s'"'"' -benchtime %s -count %s -timeout %s %s\n' "$GO" "$pattern" "$3" "$2" "$timeout" "$pkg"
    echo "loadavg-before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >>"$raw"
  local status=0
  "${cmd[@]}" 2>&1 | tee -a "$raw" || status=$?
  echo "loadavg-after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
  return "$status"
}

failed=0
bench BenchmarkLeaderFailover "$failover" 1x || failed=1
bench BenchmarkControlWrites "$runs" 1x || failed=1
bench BenchmarkNodeFailureDetection "$runs" 1x || failed=1
bench BenchmarkIdleMemory "$runs" 1x || failed=1
bench BenchmarkStorePropose "$runs" 2s || failed=1
bench BenchmarkNodeDeath "$runs" 1x || failed=1
bench BenchmarkPlaceTasks "$runs" 1x ./scheduler/ || failed=1
bench BenchmarkContainers "$runs" 1x || failed=1
bench BenchmarkDNS "$runs" 1x || failed=1
bench BenchmarkEndpoints "$runs" 1x || failed=1
bench BenchmarkMesh "$runs" 1x || failed=1
bench "BenchmarkControlPlaneScale/workers=1000/tasks=$scale_tasks" "$scale_runs" 1x || failed=1

"$GO" run ./bench/report -mode "$mode" -raw "$raw" -out docs/benchmarks.md
echo "wrote docs/benchmarks.md (raw output: $raw)" >&2
if [ "$failed" -ne 0 ]; then
  echo "some benchmarks failed; docs/benchmarks.md lists them" >&2
  exit 1
fi
