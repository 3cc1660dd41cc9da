#!/usr/bin/env bash
# The agent's steady-state CPU per cycle, several binaries side by side in one run:
#   sudo scripts/bench-steady-cpu.sh PODS SECONDS BINARY [BINARY...]
# In a private mount and network namespace (nothing of it is visible on the host: its own
# /run/netns on a tmpfs, its own "host" namespace for the veths' host ends), it makes PODS pod
# namespaces (`nsf-NNNN`, each `eth0` paired with a host end `nsfNNNN`), then runs each BINARY as
# `netshim run` (netns receiver with a 1 s interval and no /proc scan → interfaces → prometheus),
# twice, interleaved: after 5 s of warm-up it reads the process's user and system CPU over
# SECONDS and prints them per cycle. Everything goes with the namespace when the script ends.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
exec unshare --mount --net --propagation private bash -s "$@" <<'INNER'
set -euo pipefail
pods=$1 secs=$2; shift 2
mkdir -p /run/netns && mount -t tmpfs bench-netns /run/netns
ip link set lo up
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for i in $(seq -w 1 "$pods"); do echo "netns add nsf-$i"; done > "$work/ns.batch"
for i in $(seq -w 1 "$pods"); do
  echo "link add nsf$i type veth peer name eth0 netns nsf-$i"; echo "link set nsf$i up"
done > "$work/links.batch"
ip -batch "$work/ns.batch"; ip -batch "$work/links.batch"
cat > "$work/agent.yaml" <<'Y'
receivers:
  netns:
    collection_interval: 1s
    scan_proc: false
resolvers:
  interfaces:
exporters:
  prometheus:
    endpoint: 127.0.0.1:19392
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [prometheus]
Y
tick_ms=$(( 1000 / $(getconf CLK_TCK) ))
for round in 1 2; do
  for bin in "$@"; do
    "$bin" run -c "$work/agent.yaml" >/dev/null 2>&1 &
    pid=$!
    sleep 5
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    sleep "$secs"
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v b="$bin" -v r="$round" -v u=$(( (u1 - u0) * tick_ms )) -v s=$(( (s1 - s0) * tick_ms )) -v n="$secs" \
      'BEGIN { printf "%s round %d: %.1f ms per cycle (user %.1f, sys %.1f)\n", b, r, (u+s)/n, u/n, s/n }'
  done
done
INNER
