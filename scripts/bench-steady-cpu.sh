#!/usr/bin/env bash
# The agent's steady-state CPU per cycle, several binaries side by side in one run:
#   sudo scripts/bench-steady-cpu.sh PODS SECONDS BINARY [BINARY...]
# In a private mount and network namespace (nothing of it is visible on the host: its own
# /run/netns on a tmpfs, its own "host" namespace for the veths' host ends), it makes PODS pod
# namespaces (`nsf-NNNN`, each `eth0` paired with a host end `nsfNNNN`), then runs each BINARY as
# `netshim run` (netns receiver with a 1 s interval and no /proc scan → interfaces → prometheus),
# twice, interleaved: after 5 s of warm-up it reads the process's CPU time over SECONDS and
# prints it per cycle: the total exact (the sum of its threads' run time in
# /proc/PID/task/*/schedstat, in ns), the user/system split from /proc/PID/stat (in 10 ms
# ticks, so only approximate). With a C compiler it also runs scripts/stats-floor.c side by
# side, the kernel's floor: one stats request per pod a second and nothing else.
# TRANSPORT=false in the environment runs the agents without the TCP/UDP counters
# (`transport.enabled: false`). ROUNDS=N runs N interleaved rounds instead of 2; the last lines
# give each binary's (and the floor's) median over the rounds.
# Everything goes with the namespace when the script ends.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
exec unshare --mount --net --propagation private bash -s "$here" "${TRANSPORT:-true}" "${ROUNDS:-2}" "$@" <<'INNER'
set -euo pipefail
here=$1 transport=$2 rounds=$3 pods=$4 secs=$5; shift 5
mkdir -p /run/netns && mount -t tmpfs bench-netns /run/netns
ip link set lo up
work=$(mktemp -d)
# An agent left running by a failed step would go on reading the pods, skewing later runs.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
for i in $(seq -w 1 "$pods"); do echo "netns add nsf-$i"; done > "$work/ns.batch"
for i in $(seq -w 1 "$pods"); do
  echo "link add nsf$i type veth peer name eth0 netns nsf-$i"; echo "link set nsf$i up"
done > "$work/links.batch"
ip -batch "$work/ns.batch"; ip -batch "$work/links.batch"
cat > "$work/agent.yaml" <<Y
receivers:
  netns:
    collection_interval: 1s
    scan_proc: false
resolvers:
  interfaces:
    transport:
      enabled: $transport
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
# The run time (ns) of every live thread of $1; threads that come and go between two reads
# would be missed, so the thread count is printed with it.
run_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }'; }
floor=""
if command -v cc >/dev/null; then
  cc -O2 -o "$work/stats-floor" "$here/stats-floor.c" && floor="$work/stats-floor"
fi
# Every round's figure per binary (and for the floor), one per line, for the medians.
: > "$work/rounds"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    "$bin" run -c "$work/agent.yaml" >/dev/null 2>&1 &
    pid=$!
    sleep 5
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    read -r r0 t0 < <(run_ns "$pid")
    sleep "$secs"
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    read -r r1 t1 < <(run_ns "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v b="$bin" -v r="$round" -v u=$(( (u1 - u0) * tick_ms )) -v s=$(( (s1 - s0) * tick_ms )) \
      -v ns=$(( r1 - r0 )) -v n="$secs" -v t="$t0/$t1" \
      'BEGIN { printf "%s round %d: %.2f ms per cycle (user ~%.1f, sys ~%.1f; threads %s)\n", b, r, ns/1e6/n, u/n, s/n, t }' \
      | tee -a "$work/rounds"
  done
  if [ -n "$floor" ]; then
    f=$("$floor" nsf- "$pods" "${#pods}" 5 "$secs")
    echo "kernel floor (scripts/stats-floor.c) round $round: $f ms per cycle"
    echo "kernel floor round $round: $f ms per cycle" >> "$work/rounds"
  fi
done
for bin in "$@" "kernel floor"; do
  m=$(grep -F "$bin round " "$work/rounds" | sed -E 's/.*: ([0-9.]+) ms per cycle.*/\1/' | median)
  [ -z "$m" ] || echo "median of $rounds rounds: $bin $m ms per cycle"
done
INNER
