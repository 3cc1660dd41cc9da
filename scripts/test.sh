#!/usr/bin/env bash
# Runs every netshim test: formatting, lints, unit tests, and the integration tests on the real
# kernel (network namespaces and veth pairs made by the tests, so it needs root).
# Installs what the tests need from Debian's packages when it is missing, so it also passes on a
# brand-new Debian 12 machine that has only the Rust toolchain.
set -euo pipefail  # pipefail: a failing `cargo test | tee` fails the script
cd "$(dirname "$0")/.."

started=$(date +%s)
# Each step says when it starts (and how far in), so a slow or stuck one is plain in CI's log.
step_started=$started
step_name=""
step() {
  local now; now=$(date +%s)
  [ -z "$step_name" ] || echo "=== $step_name: took $(( now - step_started ))s"
  step_name=$1 step_started=$now
  echo "=== [$(date -u +%H:%M:%S) +$(( now - started ))s] $*"
}

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the tests create network namespaces and need root" >&2
  exit 1
fi
# cargo from rustup, when the caller's PATH lacks it.
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

step "Debian packages the tests need"
missing=()
command -v ip >/dev/null || missing+=(iproute2)
{ command -v nsenter >/dev/null && command -v unshare >/dev/null; } || missing+=(util-linux)
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)   # the tests stop the agent with SIGTERM by pid
[ -x /usr/bin/python3 ] || missing+=(python3)   # sends test traffic inside a test namespace
command -v ethtool >/dev/null || missing+=(ethtool) # the older shim's method, in the benchmark
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)   # a real DNS server (tests/dns.rs, e2e)
command -v npm >/dev/null || missing+=(npm)   # Grafana's dashboard schema (deploy/dashboards/check.sh)
command -v curl >/dev/null || missing+=(curl)   # a real TLS client for the metrics endpoint (tests/metrics_endpoint.rs)
# The kernel matrix: QEMU, a static busybox for the guest's init, and what packs its initramfs.
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
{ command -v depmod >/dev/null && command -v modprobe >/dev/null; } || missing+=(kmod)
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
command -v file >/dev/null || missing+=(file)
command -v objcopy >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "cargo fmt --check, cargo clippy"
# rustfmt and clippy come with the toolchain; say so loudly if this one lacks them.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "WARNING: rustfmt is not installed; formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --locked -- -D warnings
else
  echo "WARNING: clippy is not installed; lints not checked" >&2
fi
step "CRI code generated from the vendored api.proto is current (tools/cri-gen --check)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cri-gen" \
  cargo run --quiet --locked --manifest-path tools/cri-gen/Cargo.toml -- --check
step "containerd, runc, CNI plugins, the sandbox image"
# The containerd end-to-end tests: Debian's containerd, runc and CNI plugins, and an offline
# sandbox image built here (no registry can be reached).
target=${CARGO_TARGET_DIR:-target}
NETSHIM_CRI_ASSETS=$(./scripts/cri-test-assets.sh "$target/cri-assets")
export NETSHIM_CRI_ASSETS NETSHIM_REQUIRE_CRI=1
# containerd 1.7 (trixie) and 2.x (sid) beside Debian 12's 1.6, unpacked under target/.
step "containerd versions"
NETSHIM_CONTAINERD_VERSIONS=$(./scripts/containerd-versions.sh "$target/containerd-versions")
export NETSHIM_CONTAINERD_VERSIONS NETSHIM_REQUIRE_DNS=1
step "VictoriaMetrics (Debian 13's, unpacked, not installed)"
# tests/victoria_metrics.rs: the otlp_http exporter into a real time-series database.
NETSHIM_VICTORIA_METRICS=$(./scripts/debian-unpack.sh "$target/debian-newer" trixie victoria-metrics)/usr/bin/victoria-metrics
export NETSHIM_VICTORIA_METRICS NETSHIM_REQUIRE_VM=1
step "OTLP test peers (venv)"
# The OTLP tests: a venv with grpcio + opentelemetry-proto (the recording sink) and rotel (a
# real OTLP collector shipped as a PyPI wheel).
NETSHIM_OTLP_VENV=$(./scripts/otlp-test-env.sh "$target/otlp-env")
export NETSHIM_OTLP_VENV NETSHIM_REQUIRE_OTLP=1

step "rules (promtool)"
# Rules: promtool check and unit tests of both rule paths, generated PrometheusRule objects.
./install/kubernetes/rules/check.sh
step "deploy checks (manifests, Helm chart, Dockerfile)"
# Manifests and the Helm chart, offline (kubernetes-validate, chart rendering, drift).
if [ -x scripts/check-deploy.sh ]; then
  ./scripts/check-deploy.sh "$target/deploy-check"
fi

step "dashboard schema (deploy/dashboards/check.sh: @grafana/schema from npm)"
./deploy/dashboards/check.sh

step "fuzzing"
# Fuzzing (cargo fuzz, on the stable toolchain through RUSTC_BOOTSTRAP): each target for a short
# fixed budget; a crash fails the run and leaves its input under fuzz/artifacts/. Without a
# sanitizer (`-s none`): every fuzzed parser is safe Rust, where AddressSanitizer has nothing to
# find, and without it each target makes several times the runs in its budget; with debug
# assertions (`-a`), so that an arithmetic overflow is a crash.
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
# fuzz/ is a workspace of its own with a tracked Cargo.lock: it must be current, or cargo fuzz
# would rewrite it and leave the tree changed.
if ! (cd fuzz && cargo tree --locked >/dev/null 2>&1); then
  echo "fuzz/Cargo.lock is not current (a dependency changed): run 'cargo update -w' in fuzz/ and commit it" >&2
  exit 1
fi
fuzz_log=$(mktemp)
for target_name in config cri_verbose netlink_link proc_net_snmp; do
  echo "fuzzing $target_name for ${NETSHIM_FUZZ_SECONDS:-15}s"
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none -a "$target_name" -- \
        -max_total_time="${NETSHIM_FUZZ_SECONDS:-15}") >"$fuzz_log" 2>&1; then
    tail -n 60 "$fuzz_log"
    echo "fuzz target $target_name failed (its input is under fuzz/artifacts/$target_name/)" >&2
    exit 1
  fi
  grep -E "^Done" "$fuzz_log" || true
done
rm -f "$fuzz_log"

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"

# netshim as deployed: the image built offline, the DaemonSet run by containerd 1.6, 1.7 and 2.x
# with a kubelet harness (one line per runtime; each counts as one test below).
step "scripts/e2e-node.sh (image build, DaemonSet on every containerd version)"
e2e_log=$(mktemp)
trap 'rm -f "$log" "$e2e_log"' EXIT
e2e_status=0
./scripts/e2e-node.sh "$target/e2e" 2>&1 | tee "$e2e_log" || e2e_status=$?
grep -E '^e2e-node: containerd .*: passed;' "$e2e_log" | sed 's/^/test result: ok. 1 passed; 0 failed; /' >> "$log" || true
grep -E '^e2e-node: containerd .*: FAILED' "$e2e_log" | sed 's/^/test result: FAILED. 0 passed; 1 failed; /' >> "$log" || true
# The kernel tests inside Debian's 5.10, 6.1 and 6.12 kernels (QEMU), one line per kernel with
# the guest's test counts, which count below.
step "scripts/kernel-matrix.sh (kernel tests in Debian 5.10, 6.1, 6.12 under QEMU)"
matrix_log=$(mktemp)
trap 'rm -f "$log" "$e2e_log" "$matrix_log"' EXIT
matrix_status=0
./scripts/kernel-matrix.sh "$target/kernels" 2>&1 | tee "$matrix_log" || matrix_status=$?
sed -nE 's/^kernel .*: (ok|FAILED)[^,]*, ([0-9]+) passed, ([0-9]+) failed.*/test result: \1. \2 passed; \3 failed;/p' \
  "$matrix_log" >> "$log"
grep -qE '^kernel .*: FAILED' "$matrix_log" && echo "test result: FAILED. 0 passed; 1 failed; (a kernel run failed)" >> "$log"
step "done"
# One closing line for the whole run (cargo prints one per test binary, the last being the
# doc tests, which are few).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
[ "$e2e_status" = 0 ] || exit "$e2e_status"
exit "$matrix_status"
