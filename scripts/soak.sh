#!/usr/bin/env bash
# Soak test (not run in CI): the release agent under pod churn, watched for growth.
#
#   sudo ./scripts/soak.sh [MINUTES] [PODS]        # defaults: 10 minutes, 200 pods
#   NETSHIM_SOAK_OUT=DIR sudo ./scripts/soak.sh    # output folder, default target/soak
#
# Builds `cargo build --release`, makes PODS pod namespaces (`nss-NNNNN`, each holding `eth0`,
# the pod end of a veth pair whose host end is `nssNNNNN`, both up with a /31 from
# 198.18.0.0/15), runs `netshim run` (netns receiver every 5 s, interfaces resolver, prometheus
# exporter on 127.0.0.1:<free port>), then for MINUTES: every 3 s deletes a random 10% of the
# pods and makes as many new ones (new names), and sends one UDP datagram from a few pods' `eth0`
# to the host end of their own pair (no other address is ever used). Every 5 s it appends to
# DIR/soak.csv:
#
#   time_s,pods_expected,pods_reported,rss_kib,fds,sockets,cycles,cycle_ms_avg,pods_all
#
# rss_kib is VmRSS, fds the entries of /proc/PID/fd, sockets those linking to `socket:[…]`;
# from /metrics: pods_reported = this script's pods with their eth0 mapped to their own host
# end (`netshim_pod_interface_info`), cycles = `netshim_cycles_total`, cycle_ms_avg = mean cycle
# duration over the 5 s window (`netshim_cycle_duration_seconds` sum and count deltas), and
# pods_all = `netshim_pods` (every namespace on the host, other people's included: fds and
# sockets follow it). At the end it prints a summary, also written to DIR/summary.txt; the
# agent's log is DIR/agent.log, its configuration DIR/netshim.yaml.
#
# On exit, Ctrl-C or failure it stops its agent by PID, deletes every `nss-NNNNN` namespace and
# `nssNNNNN` link, and removes its temporary files. Only one soak runs at a time (a lock), so
# removing by that name pattern never touches another run's objects.
set -Eeuo pipefail  # -E: the ERR trap below also reports failures inside functions
cd "$(dirname "$0")/.."

usage() { echo "usage: sudo $0 [MINUTES] [PODS]   (env NETSHIM_SOAK_OUT, default target/soak)" >&2; }
MINUTES=${1:-10}
PODS=${2:-200}
if ! [[ $MINUTES =~ ^[0-9]+$ && $PODS =~ ^[0-9]+$ ]] || ((MINUTES < 1 || PODS < 10 || PODS > 20000)); then
  usage
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/soak.sh: makes network namespaces and veths, needs root" >&2
  exit 1
fi
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
for tool in ip curl awk shuf flock ss; do
  command -v "$tool" >/dev/null || { echo "scripts/soak.sh: needs $tool" >&2; exit 1; }
done

OUT=${NETSHIM_SOAK_OUT:-target/soak}
DURATION=$((MINUTES * 60))
SAMPLE_EVERY=5     # seconds
CHURN_EVERY=3      # seconds
CHURN=$(((PODS + 9) / 10))   # pods replaced per churn event (10%)
TRAFFIC=5          # pods sending one datagram per churn event
NS_RE='^nss-[0-9]+$'
LINK_RE='^nss[0-9]+$'

# One soak at a time: cleanup is by name pattern.
exec 9>/run/netshim-soak.lock
flock -n 9 || { echo "scripts/soak.sh: another soak is running (lock /run/netshim-soak.lock)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/netshim-soak.XXXXXX)
AGENT_PID=
CLEANED=

# ---------------------------------------------------------------------------------------------
# Names and addresses

ns_name() { printf 'nss-%05d' "$1"; }
host_name() { printf 'nss%05d' "$1"; }
# Pod n's pair: 198.18.0.0/15 in /31s, host end even, pod end odd (reused after 65536 pods).
pair_addr() { # n end(0 host, 1 pod)
  local off=$(((($1 % 65536) * 2) + $2))
  printf '198.%d.%d.%d' $((18 + off / 65536)) $(((off / 256) % 256)) $((off % 256))
}

# From the file system, not netlink: a dump can be cut short while others churn namespaces.
our_namespaces() { find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -E "$NS_RE" || true; }
our_links() { find /sys/class/net -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -E "$LINK_RE" || true; }

# Deletes every namespace and host link of this script (and of an aborted earlier soak).
remove_all() {
  local script="$TMP/remove.batch" n link deadline
  : >"$script"
  for n in $(our_links); do echo "link del $n" >>"$script"; done
  for n in $(our_namespaces); do echo "netns del $n" >>"$script"; done
  if [ -s "$script" ]; then ip -force -batch "$script" >/dev/null 2>&1 || true; fi
  # A namespace's veth goes once the last holder of the namespace lets go (asynchronously).
  deadline=$((SECONDS + 30))
  while [ -n "$(our_links)$(our_namespaces)" ] && ((SECONDS < deadline)); do
    sleep 0.5
    for link in $(our_links); do ip link del "$link" 2>/dev/null || true; done
    for n in $(our_namespaces); do ip netns del "$n" 2>/dev/null || true; done
  done
  if [ -n "$(our_links)$(our_namespaces)" ]; then
    echo "WARNING: left behind: $(our_namespaces) $(our_links)" >&2
    return 1
  fi
}

cleanup() {
  local rc=$?
  [ -n "$CLEANED" ] && return
  CLEANED=1
  trap - INT TERM
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$AGENT_PID" 2>/dev/null; then
      echo "agent $AGENT_PID did not stop within 10 s of SIGTERM; SIGKILL" >&2
      kill -KILL "$AGENT_PID" 2>/dev/null || true
    fi
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  remove_all || rc=1
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
# errexit says nothing by itself: name the command that stopped the soak.
trap 'echo "scripts/soak.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Pods

declare -a LIVE=()   # serials of the pods alive now
NEXT=1               # the next new pod's serial
CREATED=0
DELETED=0
CREATE_FAILURES=0

# Makes pods NEXT .. NEXT+count-1: one `ip -batch` for all (the pod end is made in its
# namespace; `netns exec` runs one small batch inside for its address and state).
create_pods() {
  local count=$1 script="$TMP/create.batch" i n ns host inner
  : >"$script"
  for ((i = 0; i < count; i++)); do
    n=$NEXT
    NEXT=$((NEXT + 1))
    ns=$(ns_name "$n") host=$(host_name "$n") inner="$TMP/pod-$n.batch"
    printf 'link set eth0 addrgenmode none up\naddr add %s/31 dev eth0\n' "$(pair_addr "$n" 1)" >"$inner"
    printf '%s\n' \
      "netns add $ns" \
      "link add $host type veth peer name eth0 netns $ns" \
      "link set $host addrgenmode none" \
      "addr add $(pair_addr "$n" 0)/31 dev $host" \
      "link set $host up" \
      "netns exec $ns ip -batch $inner" >>"$script"
    LIVE+=("$n")
  done
  if ! ip -batch "$script" >/dev/null 2>"$TMP/create.err"; then
    CREATE_FAILURES=$((CREATE_FAILURES + 1))
    echo "warning: making $count pods failed ($(tr '\n' ' ' <"$TMP/create.err")); removing them and making them anew" >&2
    ((CREATE_FAILURES <= 5)) || { echo "scripts/soak.sh: making pods failed 5 times" >&2; exit 1; }
    rm -f "$TMP"/pod-*.batch
    LIVE=("${LIVE[@]:0:${#LIVE[@]}-count}")
    remove_pods "$(seq $((NEXT - count)) $((NEXT - 1)))"
    create_pods "$count"
    return
  fi
  rm -f "$TMP"/pod-*.batch
  CREATED=$((CREATED + count))
}

# Removes the pods whose serials are given (whitespace-separated); host end first.
remove_pods() {
  local script="$TMP/delete.batch" n
  : >"$script"
  for n in $1; do
    printf 'link del %s\nnetns del %s\n' "$(host_name "$n")" "$(ns_name "$n")" >>"$script"
  done
  ip -force -batch "$script" >/dev/null 2>&1 || true
}

# Deletes `count` random live pods (host end first, so the kernel says so at once).
delete_pods() {
  local count=$1 n victims
  local -A gone=()
  victims=$(printf '%s\n' "${LIVE[@]}" | shuf -n "$count")
  for n in $victims; do gone[$n]=1; done
  remove_pods "$victims"
  local -a keep=()
  for n in "${LIVE[@]}"; do [ -n "${gone[$n]:-}" ] || keep+=("$n"); done
  LIVE=("${keep[@]}")
  DELETED=$((DELETED + count))
}

# One UDP datagram from a few pods' eth0 to the host end of the same pair (port 9, discard).
send_traffic() {
  local n
  for n in $(printf '%s\n' "${LIVE[@]}" | shuf -n "$TRAFFIC"); do
    ip netns exec "$(ns_name "$n")" bash -c "echo soak >/dev/udp/$(pair_addr "$n" 0)/9" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
# Sampling

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

fetch_metrics() { curl -sf --max-time 3 "http://127.0.0.1:$PORT/metrics" -o "$1"; }

# Prints: pods_reported cycles duration_sum duration_count pods_all mismapped
parse_metrics() {
  awk '
    /^netshim_pod_interface_info\{/ && /interface="eth0"/ {
      if (match($0, /netns="\/run\/netns\/nss-[0-9]+"/)) {
        ns = substr($0, RSTART + 22, RLENGTH - 23)
        host = ""
        if (match($0, /host_interface="nss[0-9]+"/)) host = substr($0, RSTART + 19, RLENGTH - 20)
        if (host == ns) ok++; else bad++
      }
    }
    /^netshim_cycles_total / { cycles = $2 }
    /^netshim_cycle_duration_seconds_sum / { sum = $2 }
    /^netshim_cycle_duration_seconds_count / { count = $2 }
    /^netshim_pods / { all = $2 }
    END { printf "%d %d %.6f %d %d %d\n", ok, cycles, sum, count, all, bad }
  ' "$1"
}

PREV_SUM=
PREV_COUNT=
MISMAPPED=0
CSV=
T0=

sample() {
  local t rss links fds sockets reported="" cycles="" sum count all="" bad avg=""
  t=$(awk -v n="$(now_ms)" -v s="$T0" 'BEGIN { printf "%.1f", (n - s) / 1000 }')
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent (pid $AGENT_PID) died; see $OUT/agent.log" >&2; exit 1; }
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$AGENT_PID/status")
  # One listing for both counts; an fd closed while it is read is skipped (find then exits 1).
  links=$(find "/proc/$AGENT_PID/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null || true)
  fds=$(grep -c . <<<"$links" || true)
  sockets=$(grep -c '^socket:' <<<"$links" || true)
  if fetch_metrics "$TMP/metrics.txt"; then
    read -r reported cycles sum count all bad < <(parse_metrics "$TMP/metrics.txt")
    [ -f "$TMP/metrics.first" ] || cp "$TMP/metrics.txt" "$TMP/metrics.first"
    cp "$TMP/metrics.txt" "$TMP/metrics.last"
    if [ -n "$PREV_COUNT" ] && ((count > PREV_COUNT)); then
      avg=$(awk -v s="$sum" -v ps="$PREV_SUM" -v c="$count" -v pc="$PREV_COUNT" \
        'BEGIN { printf "%.3f", (s - ps) / (c - pc) * 1000 }')
    fi
    PREV_SUM=$sum PREV_COUNT=$count
    MISMAPPED=$((MISMAPPED + bad))
  else
    echo "warning: /metrics did not answer at t=$t s" >&2
    reported="" cycles="" all=""
  fi
  echo "$t,${#LIVE[@]},$reported,$rss,$fds,$sockets,$cycles,$avg,$all" >>"$CSV"
}

# ---------------------------------------------------------------------------------------------
# Run

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CSV="$OUT/soak.csv"

if [ -n "$(ip -4 -o addr show to 198.18.0.0/15 2>/dev/null | grep -vE ': nss[0-9]+ ' || true)" ]; then
  echo "scripts/soak.sh: 198.18.0.0/15 is already used on this host; its pods' addresses would clash" >&2
  exit 1
fi
if [ -n "$(our_namespaces)$(our_links)" ]; then
  echo "removing the nss-* leftovers of an earlier soak"
  remove_all
fi

echo "building the release binary"
# The commit the binary is built from (the tree may move on during the soak).
BUILT_FROM="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (with uncommitted changes)')"
cargo build --release
# Run a private copy: a concurrent build must not replace the binary under the soak.
cp "${CARGO_TARGET_DIR:-target}/release/netshim" "$TMP/netshim"

PORT=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if [ -z "$(ss -Hltn "sport = :$p")" ]; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "scripts/soak.sh: no free port found" >&2; exit 1; }

CFG="$TMP/netshim.yaml"
cat >"$CFG" <<EOF
receivers:
  netns:
    collection_interval: 5s
resolvers:
  interfaces: {}
exporters:
  prometheus:
    endpoint: 127.0.0.1:$PORT
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [prometheus]
  telemetry:
    logs:
      level: info
EOF
cp "$CFG" "$OUT/netshim.yaml"
"$TMP/netshim" validate -c "$CFG"

echo "making $PODS pods (nss-NNNNN)"
t=$(now_ms)
create_pods "$PODS"
echo "  $PODS pods in $(($(now_ms) - t)) ms"

"$TMP/netshim" run -c "$CFG" >/dev/null 2>"$OUT/agent.log" 9>&- &
AGENT_PID=$!
echo "agent pid $AGENT_PID, http://127.0.0.1:$PORT/metrics"
t=$(now_ms)
ready=
for _ in $(seq 600); do
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent exited at start; see $OUT/agent.log" >&2; exit 1; }
  if fetch_metrics "$TMP/metrics.txt" && read -r reported _ < <(parse_metrics "$TMP/metrics.txt") \
    && ((reported == PODS)); then
    ready=$(($(now_ms) - t))
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "the agent did not report all $PODS pods within 60 s" >&2; exit 1; }
echo "  all $PODS pods on /metrics $ready ms after start"

echo "time_s,pods_expected,pods_reported,rss_kib,fds,sockets,cycles,cycle_ms_avg,pods_all" >"$CSV"
T0=$(now_ms)
END=$((T0 + DURATION * 1000))
next_sample=$T0
next_churn=$((T0 + CHURN_EVERY * 1000))
churns=0
echo "churning for $MINUTES min: $CHURN pods replaced every ${CHURN_EVERY} s, a sample every ${SAMPLE_EVERY} s -> $CSV"
while :; do
  now=$(now_ms)
  if ((now >= next_sample)); then
    sample
    next_sample=$((next_sample + SAMPLE_EVERY * 1000))
    if ((next_sample > END && now < END)); then next_sample=$END; fi
    ((now < END)) || break
  fi
  if ((now >= next_churn && now < END)); then
    delete_pods "$CHURN"
    create_pods "$CHURN"
    send_traffic
    churns=$((churns + 1))
    next_churn=$((next_churn + CHURN_EVERY * 1000))
  fi
  wake=$((next_sample < next_churn ? next_sample : next_churn))
  now=$(now_ms)
  if ((wake > now)); then sleep "$(awk -v d=$((wake - now)) 'BEGIN { printf "%.3f", d / 1000 }')"; fi
done

# ---------------------------------------------------------------------------------------------
# Summary

# A p-quantile upper bound from the histogram's bucket counts gained over the run.
hist_quantile() { # q
  awk -v q="$1" '
    FNR == NR && /^netshim_cycle_duration_seconds_bucket/ { match($0, /le="[^"]+"/); first[substr($0, RSTART + 4, RLENGTH - 5)] = $2; next }
    /^netshim_cycle_duration_seconds_bucket/ {
      match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      les[++n] = le; last[le] = $2
    }
    END {
      total = last["+Inf"] - first["+Inf"]
      for (i = 1; i <= n; i++) {
        if (last[les[i]] - first[les[i]] >= q * total) {
          if (les[i] == "+Inf") print "> 2500"; else printf "<= %g\n", les[i] * 1000
          exit
        }
      }
    }' "$TMP/metrics.first" "$TMP/metrics.last"
}

{
  echo "netshim soak, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), built from $BUILT_FROM"
  awk -F, -v minutes="$MINUTES" -v pods="$PODS" -v churns="$churns" -v created="$CREATED" \
    -v deleted="$DELETED" -v failures="$CREATE_FAILURES" -v per="$CHURN" -v ready="$ready" -v mismapped="$MISMAPPED" '
    function pct(sorted, k, p,   i) { i = int(p * k + 0.999999); if (i < 1) i = 1; return sorted[i] }
    function fmtmib(k) { return sprintf("%.1f MiB", k / 1024) }
    NR == 1 { next }
    {
      t = $1; n++
      if (n == 1) { rss0 = $4; fds0 = $5; sock0 = $6; cyc0 = $7; rssmin = $4 }
      if ($4 < rssmin) rssmin = $4
      if ($4 > rssmax) rssmax = $4
      if ($5 > fdsmax) fdsmax = $5
      if ($6 > sockmax) sockmax = $6
      rss1 = $4; fds1 = $5; sock1 = $6; cyc1 = $7; tlast = t
      if ($8 != "") { c[++nc] = $8; csum += $8; if ($8 > cmax) cmax = $8 }
      if ($3 != $2) { lag++; d = $2 - $3; if (d < 0) d = -d; if (d > lagmax) lagmax = d }
      rows[n] = $0
    }
    END {
      for (i = 1; i <= n; i++) {
        split(rows[i], f, ",")
        if (f[1] < 60) { fr += f[4]; ff += f[5]; fa += f[9]; fn++ }
        if (f[1] >= tlast - 60) { lr += f[4]; lf += f[5]; la += f[9]; ln++ }
      }
      # insertion sort of the window averages
      for (i = 2; i <= nc; i++) { v = c[i]; j = i - 1; while (j > 0 && c[j] > v) { c[j + 1] = c[j]; j-- } c[j + 1] = v }
      printf "duration          %.0f s (%d min asked), %d samples every 5 s\n", tlast, minutes, n
      printf "pods              %d; first full /metrics %d ms after the agent started\n", pods, ready
      printf "churn events      %d (every 3 s: %d pods deleted and %d made each; %d made, %d deleted in all; create batches redone: %d)\n", churns, per, per, created - pods, deleted, failures
      printf "cycles            %d in the run (%.2f per s: interval 5 s plus link and netns-folder events)\n", cyc1 - cyc0, (cyc1 - cyc0) / tlast
      printf "pods reported     != expected in %d of %d samples (largest gap %d); eth0 mapped to another host end: %d\n", lag, n, lagmax, mismapped
      printf "RSS               start %s, min %s, max %s, end %s\n", fmtmib(rss0), fmtmib(rssmin), fmtmib(rssmax), fmtmib(rss1)
      printf "fds               start %d, max %d, end %d\n", fds0, fdsmax, fds1
      printf "sockets           start %d, max %d, end %d\n", sock0, sockmax, sock1
      if (nc > 0)
        printf "cycle ms          mean %.2f, p50 %.2f, p95 %.2f, max %.2f (of the %d 5-s window averages)\n", csum / nc, pct(c, nc, 0.5), pct(c, nc, 0.95), c[nc], nc
      fr /= fn; ff /= fn; fa /= fn; lr /= ln; lf /= ln; la /= ln
      rg = (lr - fr) / fr * 100; fg = (lf - ff) / ff * 100
      printf "first vs last min RSS %.1f -> %.1f MiB (%+.1f%%), fds %.1f -> %.1f (%+.1f%%), namespaces on the host (netshim_pods) %.1f -> %.1f\n", fr / 1024, lr / 1024, rg, ff, lf, fg, fa, la
      printf "verdict           RSS %s; fds %s (growth = last-minute average over 5%% above the first minute)\n", (rg > 5 ? "GREW" : "did not grow"), (fg > 5 ? "GREW" : "did not grow")
    }' "$CSV"
  echo "cycle ms, whole run  mean $(awk -v a="$(parse_metrics "$TMP/metrics.first")" -v b="$(parse_metrics "$TMP/metrics.last")" \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", (y[3] - x[3]) / (y[4] - x[4]) * 1000 }'), p95 $(hist_quantile 0.95) ms, max $(hist_quantile 1) ms (histogram buckets)"
  echo "errors            $(grep -c '^netshim_errors_total{' "$TMP/metrics.last" || true) error series on /metrics; $(grep -ciE ' (WARN|ERROR) ' "$OUT/agent.log" || true) warnings/errors in agent.log"
  echo "files             $CSV, $OUT/agent.log"
} | tee "$OUT/summary.txt"
