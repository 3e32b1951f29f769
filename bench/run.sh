#!/usr/bin/env bash
# Runs shoal's benchmarks and rewrites docs/benchmarks.md from their output.
#
#   bench/run.sh quick   5 failover samples, 3 runs of the rest, one scale-up
#                        to 10,000 tasks (several minutes)
#   bench/run.sh full    11 failover samples, 5 runs of the rest, three
#                        scale-ups to 100,000 tasks
#   bench/run.sh MODE BenchmarkX ...
#                        only those groups: their output replaces the same
#                        groups' in the raw output, the others are kept
#
# Each benchmark group is one `go test -bench` command; its exact command line
# and the load average before and after it are written into the raw output
# (bench/results/MODE.txt, standard benchmark format with extra "key: value"
# lines, among them the date and commit each group ran at), which
# bench/report turns into docs/benchmarks.md. Only the benchmarks' standard
# output goes into the raw file; what the processes they start print on
# standard error stays on the terminal, where it cannot split a result line.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
  quick) failover=5 runs=3 scale_tasks=10000 scale_runs=1 timeout=15m ;;
  full) failover=11 runs=5 scale_tasks=100000 scale_runs=3 timeout=40m ;;
  *)
    echo "usage: bench/run.sh quick|full [BenchmarkName ...]" >&2
    exit 2
    ;;
esac
shift
only=("$@")

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
# A run of only some groups writes them to $fresh and splices them in at the end.
fresh=$raw
if [ ${#only[@]} -gt 0 ]; then
  fresh=$(mktemp "${TMPDIR:-/tmp}/shoal-bench-raw.XXXXXX")
  trap 'rm -rf "$bindir" "$fresh"' EXIT
fi
: >"$fresh"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The run's own outputs (this raw file, the report) do not count as changes.
if [ -n "$(git status --porcelain -- . ':!bench/results' ':!docs/benchmarks.md' 2>/dev/null)" ]; then
  commit="$commit plus uncommitted changes in the work tree"
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "go-version: $($GO env GOVERSION)"
  echo "commit: $commit"
} >>"$fresh"

# bench NAME COUNT BENCHTIME [PACKAGE]: runs one benchmark group (of
# ./bench/ unless PACKAGE is given), appending to $raw. NAME may name a
# sub-benchmark, e.g. BenchmarkX/size=10: only that one runs.
bench() {
  if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qxF "${1%%/*}"; then
    return 0
  fi
  local pattern="^${1//\//\$/^}\$" pkg=${4:-./bench/}
  local cmd=("$GO" test -run '^$' -bench "$pattern" -benchtime "$3" -count "$2" -timeout "$timeout" "$pkg")
  echo "==> ${cmd[*]}" >&2
  {
    printf 'command: %s test -run '"'"'^$'"'"' -bench '"'"'%s'"'"' -benchtime %s -count %s -timeout %s %s\n' "$GO" "$pattern" "$3" "$2" "$timeout" "$pkg"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $commit"
    echo "loadavg-before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >>"$fresh"
  local status=0
  "${cmd[@]}" | tee -a "$fresh" || status=$?
  echo "loadavg-after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$fresh"
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
bench BenchmarkRollingUpdate "$runs" 1x || failed=1
# Docker Swarm side by side: needs dockerd (docker.io, installed by
# SHOAL_BENCH_DEPS=1 scripts/install-deps.sh); each run times every step on
# both systems, about 6 minutes here, so quick runs it once (3 runs would
# overrun its 15 min timeout) and full as often as the rest.
bench BenchmarkSwarm "$((runs > 3 ? runs : 1))" 1x || failed=1
bench "BenchmarkControlPlaneScale/workers=1000/tasks=$scale_tasks" "$scale_runs" 1x || failed=1

# splice: the groups of $fresh replace those of $raw with the same command
# (or are appended); $raw's header and other groups stay.
if [ "$fresh" != "$raw" ]; then
  awk '
    FNR == 1 { file++; key = "" }
    /^command: / { key = $0 }
    file == 1 { if (key != "") { fresh[key] = fresh[key] $0 "\n"; if (!(key in seen)) { order[++n] = key; seen[key] = 1 } } next }
    /^command: / { if (key in fresh) { printf "%s", fresh[key]; done[key] = 1; skip = 1 } else skip = 0 }
    !skip { print }
    END { for (i = 1; i <= n; i++) if (!(order[i] in done)) printf "%s", fresh[order[i]] }
  ' "$fresh" "$raw" >"$fresh.merged"
  mv "$fresh.merged" "$raw"
fi

"$GO" run ./bench/report -mode "$mode" -raw "$raw" -out docs/benchmarks.md
echo "wrote docs/benchmarks.md (raw output: $raw)" >&2
if [ "$failed" -ne 0 ]; then
  echo "some benchmarks failed; docs/benchmarks.md lists them" >&2
  exit 1
fi
