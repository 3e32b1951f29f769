#!/usr/bin/env bash
# The main job: a local shoal cluster of one manager and two workers, each on
# its own loopback address with its own data dir under .demo/, running in the
# background. `demo.sh up` starts it (or reports it running), `demo.sh down`
# stops it and removes its state.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL="$PWD/bin/shoal"
DEMO="$PWD/.demo"
NODES=(m1:127.0.10.1 w1:127.0.10.2 w2:127.0.10.3)
export SHOAL_HOST="unix://$DEMO/m1/shoal.sock"

running() { [ -f "$DEMO/$1.pid" ] && kill -0 "$(cat "$DEMO/$1.pid")" 2>/dev/null; }

# wait_for DESC CMD...: poll CMD until it succeeds, at most 30 s.
wait_for() {
  local desc=$1; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $desc; logs are in $DEMO/*.log" >&2
  exit 1
}

start() { # start NAME ARGS...
  local name=$1; shift
  nohup "$SHOAL" "$@" >"$DEMO/$name.log" 2>&1 &
  echo $! >"$DEMO/$name.pid"
}

all_ready() { [ "$("$SHOAL" node ls --format '{{.Status}}' | grep -c '^ready$')" -eq 3 ]; }

up() {
  mkdir -p "$DEMO"
  if running m1; then
    echo "The demo cluster is already running."
  else
    for n in "${NODES[@]}"; do
      name=${n%%:*}; ip=${n#*:}
      if [ -f "$DEMO/$name/node.json" ]; then
        start "$name" daemon --data-dir "$DEMO/$name"
      elif [ "$name" = m1 ]; then
        start m1 init --data-dir "$DEMO/m1" --advertise-addr "$ip"
        wait_for "the manager" "$SHOAL" info
      else
        token=$("$SHOAL" join-token -q worker)
        start "$name" join --token "$token" --data-dir "$DEMO/$name" --advertise-addr "$ip" 127.0.10.1
      fi
    done
  fi
  wait_for "three ready nodes" all_ready
  "$SHOAL" node ls
  echo
  if ! "$SHOAL" service inspect hello >/dev/null 2>&1; then
    "$SHOAL" service create --name hello --replicas 3 --env GREETING=hello busybox \
      sh -c 'while :; do echo "$GREETING from task pid $$ at $(date +%T)"; sleep 5; done' >/dev/null
  fi
  "$SHOAL" service ps --filter desired-state=running hello
  cat <<MSG

The demo cluster is up, with the service "hello" (3 tasks) running. Talk to it with:

    export SHOAL_HOST=$SHOAL_HOST
    bin/shoal node ls
    bin/shoal service logs --tail 2 hello
    bin/shoal service scale hello=5

Stop it and remove its state with 'make demo-down'.
MSG
}

down() {
  # Services first, so their tasks stop; the daemons keep tasks running
  # across their own restarts.
  if running m1; then
    services=$("$SHOAL" service ls -q 2>/dev/null || true)
    [ -z "$services" ] || "$SHOAL" service rm $services >/dev/null || true
  fi
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    if running "$name"; then kill "$(cat "$DEMO/$name.pid")"; fi
  done
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    for _ in $(seq 1 100); do running "$name" || break; sleep 0.1; done
    if running "$name"; then kill -9 "$(cat "$DEMO/$name.pid")"; fi
  done
  # Task shims left behind (by a daemon that was killed) pass the stop on
  # to their tasks.
  pkill -f "task-shim --dir $DEMO/" 2>/dev/null || true
  rm -rf "$DEMO"
  echo "The demo cluster is stopped and its state removed."
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
