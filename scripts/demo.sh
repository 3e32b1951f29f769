#!/usr/bin/env bash
# The main job: a local shoal cluster of one manager and two workers running
# the words demo apps as real containers (containerd). Each node runs in a
# network namespace of its own (a "host": shoal-demo-m1|w1|w2, 10.198.0.1-3)
# joined to the others by the bridge shoaldemo0 (10.198.0.254 in this
# machine's namespace), so every node owns its bridge, routes and iptables as
# on a real machine, and the published port is reachable from this machine
# through the bridge. State lives under .demo/.
#
# `demo.sh up` starts it (or reports it running), `demo.sh down` stops it and
# removes everything it made. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL="$PWD/bin/shoal"
DEMO="$PWD/.demo"
IMAGES="$PWD/bin/images"
BRIDGE=shoaldemo0
PREFIX=10.198.0.
GATEWAY=${PREFIX}254
NODES=(m1:1 w1:2 w2:3)
MANAGER_IP=${PREFIX}1
WEB_PORT=8080
LOGIN=demo:demo
export SHOAL_HOST="unix://$DEMO/m1/shoal.sock"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh needs root: it makes network namespaces, a bridge and iptables rules, and runs containerd. Run it with sudo." >&2
  exit 1
fi
for c in ip nsenter iptables containerd ctr runc curl; do
  if ! command -v "$c" >/dev/null; then
    echo "demo.sh needs $c on PATH (scripts/install-deps.sh installs the tools)." >&2
    exit 1
  fi
done

netns() { echo "shoal-demo-$1"; }
veth() { echo "shoaldemo-$1"; }
# on NAME CMD...: runs CMD on the node's host (its network namespace).
on() { local n=$1; shift; nsenter --net="/var/run/netns/$(netns "$n")" -- "$@"; }

# running NAME: the node's daemon is alive (and is ours: the pid may have
# been reused since).
running() {
  local pid
  [ -f "$DEMO/$1.pid" ] || return 1
  pid=$(cat "$DEMO/$1.pid")
  kill -0 "$pid" 2>/dev/null && grep -q "$DEMO/$1" "/proc/$pid/cmdline" 2>/dev/null
}

# wait_for SECONDS DESC CMD...: polls CMD until it succeeds, at most SECONDS.
wait_for() {
  local secs=$1 desc=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out after ${secs}s waiting for $desc; logs are in $DEMO/*.log" >&2
  exit 1
}

# The iptables rules that let the hosts out as a LAN would (forwarded
# through this namespace, masqueraded beyond the bridge), as
# internal/testutil/hosts.go does.
RULES=(
  "FORWARD -i $BRIDGE -j ACCEPT"
  "FORWARD -o $BRIDGE -j ACCEPT"
  "-t nat POSTROUTING -s ${PREFIX}0/24 ! -o $BRIDGE -j MASQUERADE"
)
# rule OP SPEC: iptables with OP (-C, -I, -D) inserted after the table.
rule() {
  local spec=$2 table=()
  if [[ $spec == "-t nat "* ]]; then table=(-t nat); spec=${spec#-t nat }; fi
  # shellcheck disable=SC2086
  iptables "${table[@]}" "$1" $spec 2>/dev/null
}

network_up() {
  if ! ip link show $BRIDGE >/dev/null 2>&1; then
    ip link add $BRIDGE type bridge
    ip addr add $GATEWAY/24 dev $BRIDGE
    ip link set $BRIDGE up
  fi
  sysctl -qw net.ipv4.ip_forward=1
  for r in "${RULES[@]}"; do rule -C "$r" || rule -I "$r"; done
  for n in "${NODES[@]}"; do
    local name=${n%%:*} ip=$PREFIX${n#*:}
    [ -e "/var/run/netns/$(netns "$name")" ] && continue
    ip netns add "$(netns "$name")"
    ip link add "$(veth "$name")" type veth peer name eth0 netns "$(netns "$name")"
    ip link set "$(veth "$name")" master $BRIDGE up
    ip -n "$(netns "$name")" addr add "$ip/24" dev eth0
    ip -n "$(netns "$name")" link set eth0 up
    ip -n "$(netns "$name")" link set lo up
    ip -n "$(netns "$name")" route add default via $GATEWAY
  done
}

start() { # start NAME ARGS...: the node's daemon, in the background
  local name=$1; shift
  nohup nsenter --net="/var/run/netns/$(netns "$name")" -- "$SHOAL" "$@" >>"$DEMO/$name.log" 2>&1 &
  echo $! >"$DEMO/$name.pid"
}

all_ready() { [ "$("$SHOAL" node ls --format '{{.Status}}' | grep -c '^ready$')" -eq 3 ]; }

# containers_gone: no node's containerd runs a container task any more.
containers_gone() {
  local n out
  for n in "${NODES[@]}"; do
    out=$(ctr -a "$DEMO/${n%%:*}/containerd/ctrd.sock" -n shoal tasks ls -q 2>/dev/null) || continue
    [ -z "$out" ] || return 1
  done
}
# Commands' output is captured before it is searched: with pipefail, a
# `grep -q` that stops reading early would fail the pipeline.
answers() { # answers IP WORD: the web front lists WORD
  local out
  out=$(curl -sf -m 5 -u "$LOGIN" "http://$1:$WEB_PORT/api/words") && grep -q "$2" <<<"$out"
}

load_images() {
  local have
  have=$("$SHOAL" image ls --local -q)
  for app in words-db words-app words-web; do
    if ! grep -qx "docker.io/library/$app:v1" <<<"$have"; then
      "$SHOAL" image load -i "$IMAGES/$app-v1.tar"
    fi
  done
}

# The words stack (testdata/stacks/words.yml): database, application-server
# and web-server, which find each other by their short service names and
# start in dependency order, each tier once the one below is healthy.
# web-server's port is published through the routing mesh, so every host
# answers it. Deploying an unchanged file again changes nothing.
STACK=words
deploy() {
  WORDS_USERS=$LOGIN "$SHOAL" stack deploy --detach=false -c testdata/stacks/words.yml $STACK
}

up() {
  if [ ! -x "$SHOAL" ] || [ ! -f "$IMAGES/words-web-v1.tar" ]; then
    echo "bin/shoal or bin/images/ is missing: run 'make demo' (it builds both)." >&2
    exit 1
  fi
  mkdir -p "$DEMO"
  network_up
  local fresh=false
  if running m1 && running w1 && running w2; then
    echo "The demo cluster is already running."
  else
    for n in "${NODES[@]}"; do
      local name=${n%%:*} ip=$PREFIX${n#*:}
      running "$name" && continue
      if [ -f "$DEMO/$name/node.json" ]; then
        start "$name" daemon --data-dir "$DEMO/$name"
      elif [ "$name" = m1 ]; then
        fresh=true
        start m1 init --runtime containerd --data-dir "$DEMO/m1" --advertise-addr "$ip"
        wait_for 60 "the manager" "$SHOAL" info
      else
        local token
        token=$("$SHOAL" join-token -q worker)
        start "$name" join --runtime containerd --token "$token" --data-dir "$DEMO/$name" --advertise-addr "$ip" "$MANAGER_IP"
      fi
    done
  fi
  wait_for 60 "three ready nodes" all_ready
  "$SHOAL" node ls
  echo
  load_images
  deploy
  # The mesh answers web's port on every host; the manager's is the one shown.
  local web_ip=$MANAGER_IP
  wait_for 60 "the web front to answer at http://$web_ip:$WEB_PORT/" \
    curl -sf -m 5 -u "$LOGIN" "http://$web_ip:$WEB_PORT/api/words"
  if $fresh || ! answers "$web_ip" shoal; then
    # Through the web front, the app and the db, across the hosts.
    wait_for 60 "a word to be stored through the web front" \
      curl -sf -m 5 -u "$LOGIN" -X POST --data shoal "http://$web_ip:$WEB_PORT/api/words"
  fi
  "$SHOAL" stack ps --filter desired-state=running $STACK
  echo
  echo "\$ curl -u $LOGIN http://$web_ip:$WEB_PORT/api/words"
  curl -sS -m 5 -u "$LOGIN" "http://$web_ip:$WEB_PORT/api/words"
  echo
  cat <<MSG

The demo cluster is up: three hosts (network namespaces shoal-demo-m1|w1|w2 at
${PREFIX}1-3), each node with its own containerd, running the stack "$STACK"
(testdata/stacks/words.yml) as containers: words_database (on the manager,
volume words_data), words_application-server (3 tasks) and words_web-server
(3 tasks, port $WEB_PORT).

    Open http://$web_ip:$WEB_PORT/   login: ${LOGIN%%:*}  password: ${LOGIN#*:}

The tiers find each other by their short names (DB_HOST=database,
APP_NAME=application-server: each node's DNS answers the service's VIP), and
the web port is published through the routing mesh: every host answers it
(http://${PREFIX}2:$WEB_PORT/ too). Try:

    export SHOAL_HOST=$SHOAL_HOST
    bin/shoal stack services $STACK
    bin/shoal stack ps $STACK
    bin/shoal service logs --tail 3 words_application-server
    bin/shoal service scale words_application-server=4
    bin/shoal image ls

Kill the database's container (it runs on m1) and watch a new task take its
place; the words stay, in its volume:

    ctr -a $DEMO/m1/containerd/ctrd.sock -n shoal task kill -s SIGKILL \\
      \$(bin/shoal service ps --filter desired-state=running --format '{{.ContainerID}}' words_database)
    sleep 10; bin/shoal service ps words_database
    curl -u $LOGIN http://$web_ip:$WEB_PORT/api/words

Stop it and remove everything it made with 'make demo-down'.
MSG
}

down() {
  # Services first, so their containers stop: they outlive their daemons.
  if running m1; then
    local services
    services=$("$SHOAL" service ls -q 2>/dev/null || true)
    [ -z "$services" ] || "$SHOAL" service rm $services >/dev/null || true
    # Let the agents stop and delete the containers: a daemon stopped
    # meanwhile can leave a container's shim without a container.
    for _ in $(seq 1 150); do containers_gone && break; sleep 0.2; done
  fi
  local n name
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    if running "$name"; then kill "$(cat "$DEMO/$name.pid")" || true; fi
  done
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    for _ in $(seq 1 150); do running "$name" || break; sleep 0.2; done
    if running "$name"; then
      echo "$name did not stop within 30s of SIGTERM; killing it" >&2
      kill -9 "$(cat "$DEMO/$name.pid")" || true
    fi
  done
  # What outlives a daemon (its containerd's containers, snapshots, mounts,
  # task namespaces and rules) is removed on the node's host.
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    if [ -d "$DEMO/$name/containerd" ]; then
      if [ -e "/var/run/netns/$(netns "$name")" ]; then
        on "$name" "$SHOAL" cleanup --data-dir "$DEMO/$name" || echo "shoal cleanup of $name failed; see above" >&2
      else
        "$SHOAL" cleanup --data-dir "$DEMO/$name" || echo "shoal cleanup of $name failed; see above" >&2
      fi
    fi
  done
  # Shims of this demo's containerds that outlived their containers.
  local shims
  shims=$(pgrep -f -- "-address $DEMO/" || true)
  if [ -n "$shims" ]; then
    echo "stopping leftover containerd shims of the demo: $(echo $shims)" >&2
    kill -9 $shims 2>/dev/null || true
  fi
  for n in "${NODES[@]}"; do
    name=${n%%:*}
    if [ -e "/var/run/netns/$(netns "$name")" ]; then ip netns delete "$(netns "$name")"; fi
    # The veth usually goes with its peer in the namespace, asynchronously.
    ip link delete "$(veth "$name")" 2>/dev/null || true
  done
  for r in "${RULES[@]}"; do
    for _ in 1 2 3; do rule -D "$r" || break; done
  done
  if ip link show $BRIDGE >/dev/null 2>&1; then ip link delete $BRIDGE; fi
  rm -rf "$DEMO"
  echo "The demo cluster is stopped and everything it made removed."
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
