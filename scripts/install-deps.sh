#!/usr/bin/env bash
# Installs what building and testing shoal needs on a fresh Debian machine:
# Go must already be on PATH (the project's machines ship it); the rest comes
# from Debian's packages and the Go module proxy. Safe to run again.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need_apt+=(libprotobuf-dev)
command -v dig >/dev/null || need_apt+=(bind9-dnsutils)
# The DNS tests' upstream and the DNS benchmark's peer and load generator.
command -v dnsmasq >/dev/null || need_apt+=(dnsmasq-base)
command -v dnsperf >/dev/null || need_apt+=(dnsperf)
# The containerd runtime, and the network namespaces, bridges and NAT rules
# of task networking (and of the tests' simulated hosts).
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
command -v iptables >/dev/null || need_apt+=(iptables)
# The service VIP load balancer (worker/lb) drives nft.
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v ping >/dev/null || need_apt+=(iputils-ping)
# The routing mesh's benchmark: wrk drives HTTP load, nginx serves the
# backends and is the peer proxy it is compared with.
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v grpcurl >/dev/null 2>&1 || true  # optional, not in Debian 12

export DEBIAN_FRONTEND=noninteractive
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Docker Swarm, the peer of BenchmarkSwarm: for the benchmarks only
# (SHOAL_BENCH_DEPS=1), never for the tests. The benchmark starts its own
# dockerd in network namespaces; the host must not run one (it sets the
# host's FORWARD policy to DROP), so the package is installed under a
# policy-rc.d that refuses to start services, and not started at boot.
if [ "${SHOAL_BENCH_DEPS:-}" = 1 ] && ! command -v dockerd >/dev/null; then
  echo "installing Debian packages: docker.io (its service is not started)"
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod 755 "$policy"
    made_policy=1
  fi
  $sudo_cmd apt-get update -qq
  status=0
  $sudo_cmd apt-get install -y -qq docker.io >/dev/null || status=$?
  [ -z "$made_policy" ] || $sudo_cmd rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
  if command -v systemctl >/dev/null; then
    $sudo_cmd systemctl disable docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi

command -v go >/dev/null || { echo "Go is not on PATH; install Go 1.26 first" >&2; exit 1; }
go mod download
