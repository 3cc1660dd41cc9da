#!/usr/bin/env bash
# What TLS and authorization cost per scrape, side by side in one run:
#   sudo scripts/bench-scrape-cost.sh BINARY [PODS] [SCRAPES]
# In a private mount and network namespace it makes PODS pod namespaces (default 100), then runs
# BINARY as `netshim run` (netns → interfaces → prometheus on 127.0.0.1) in four set-ups — plain
# HTTP; TLS (self-signed); TLS + `auth: kubernetes`, the reviews answered by a small server on
# loopback (the cached path is what is measured: one review per token, then the cache); TLS +
# `auth: basic` — and scrapes each with curl, SCRAPES times (default 1000) from 4 parallel
# slots (at 100 a second where curl's --rate paces parallel transfers; 7.88 does not), once reusing connections (as Prometheus does) and once with a new
# connection per scrape. Prints the agent's CPU per scrape (its threads' run time from
# /proc/PID/task/*/schedstat, less its idle rate measured just before) and fails on any answer
# other than 200.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
exec unshare --mount --net --propagation private bash -s "$@" <<'INNER'
set -euo pipefail
bin=$1 pods=${2:-100} scrapes=${3:-1000}
mkdir -p /run/netns && mount -t tmpfs bench-netns /run/netns
ip link set lo up
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for i in $(seq -w 1 "$pods"); do echo "netns add nsc-$i"; done > "$work/ns.batch"
for i in $(seq -w 1 "$pods"); do
  echo "link add nsc$i type veth peer name eth0 netns nsc-$i"; echo "link set nsc$i up"
done > "$work/links.batch"
ip -batch "$work/ns.batch"; ip -batch "$work/links.batch"

# The API server's two answers, for one token: who it is, and that they may get /metrics.
cat > "$work/reviews.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "/tokenreviews" in self.path:
            ok = review["spec"].get("token") == "bench-token"
            review["status"] = {"authenticated": ok, "user": {"username": "bench"}} if ok else {"authenticated": False}
        else:
            review["status"] = {"allowed": review["spec"].get("user") == "bench"}
        body = json.dumps(review).encode()
        self.send_response(201); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/reviews.py" 19481 &

hash=$(python3 -c 'import crypt; print(crypt.crypt("bench-pass", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))' 2>/dev/null || true)
base="receivers:
  netns:
    collection_interval: 10s
    scan_proc: false
resolvers:
  interfaces:
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [prometheus]
exporters:
  prometheus:
    endpoint: 127.0.0.1:19480"
printf '%s\n' "$base" > "$work/plain.yaml"
printf '%s\n    tls: {}\n' "$base" > "$work/tls.yaml"
printf '%s\n    tls: {}\n    auth:\n      mode: kubernetes\n      auth_type: none\n      endpoint: http://127.0.0.1:19481\n' "$base" > "$work/tls-kubernetes.yaml"
setups="plain tls tls-kubernetes"
if [ -n "$hash" ]; then
  printf '%s\n    tls: {}\n    auth:\n      mode: basic\n      users:\n        bench: %s\n' "$base" "'$hash'" > "$work/tls-basic.yaml"
  setups="$setups tls-basic"
fi

run_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }
for setup in $setups; do
  scheme=https; [ "$setup" = plain ] && scheme=http
  auth=(); case $setup in
    tls-kubernetes) auth=(-H "Authorization: Bearer bench-token") ;;
    tls-basic) auth=(-u bench:bench-pass) ;;
  esac
  "$bin" run -c "$work/$setup.yaml" >/dev/null 2>&1 &
  pid=$!
  sleep 3
  url="$scheme://127.0.0.1:19480/metrics"
  for reuse in yes no; do
    close=(); [ "$reuse" = no ] && close=(-H "Connection: close")
    curl -sk "${auth[@]}" -o /dev/null "$url"   # warm: the review, the first render
    i0=$(run_ns "$pid"); sleep 5; i1=$(run_ns "$pid")
    t0=$(date +%s%N); c0=$(run_ns "$pid")
    targets=(); for _ in $(seq "$scrapes"); do targets+=(-o /dev/null "$url"); done
    codes=$(curl -sk --no-progress-meter --parallel --parallel-max 4 --rate 100/s "${auth[@]}" "${close[@]}" \
      -w '%{http_code}\n' "${targets[@]}")
    c1=$(run_ns "$pid"); t1=$(date +%s%N)
    ok=$(grep -c '^200$' <<<"$codes" || true)
    awk -v s="$setup" -v r="$reuse" -v ok="$ok" -v n="$scrapes" -v idle=$(( (i1 - i0) / 5 )) \
      -v cpu=$(( c1 - c0 )) -v wall=$(( t1 - t0 )) 'BEGIN {
        per = (cpu - idle * wall / 1e9) / n / 1000
        printf "%-15s connections reused: %-3s  %4d/%d answered 200  %6.1f µs CPU per scrape (%.1f scrapes/s)\n", s, r, ok, n, per, n / (wall / 1e9) }'
    [ "$ok" = "$scrapes" ] || { echo "FAILED: not every scrape answered 200" >&2; exit 1; }
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
INNER
