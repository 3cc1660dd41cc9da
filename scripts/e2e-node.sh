#!/usr/bin/env bash
# netshim as it is deployed, on one node in a box: the image built by scripts/build-image.sh, the
# DaemonSet and ConfigMap as `kubectl apply -k` would create them (tests/e2e/overlay: the install
# with the image named and an OTLP exporter added, as an operator would), run by a real
# containerd of every version a cluster runs, with tests/e2e/kubelet.py playing the kubelet.
# Prints one line per runtime with its version and what passed; exits non-zero if any failed.
#
# usage: sudo scripts/e2e-node.sh [WORK_DIR]        (default: ${CARGO_TARGET_DIR:-target}/e2e)
# env:   NETSHIM_E2E_RUNTIMES="1.6 1.7 2.1"   which versions (prefixes of those found)
#        NETSHIM_E2E_SCALE=50                 pods in all for the RSS/CPU figure (on the last runtime)
#        NETSHIM_IMAGE_ARCHIVE=PATH           an image archive already built (skips the build)
#
# Installs what it needs when missing: Debian's dnsmasq-base (the cluster DNS) and, through the
# scripts it calls, containerd 1.6, runc and the CNI plugins (system), containerd 1.7 and 2.x
# (Debian trixie/sid, unpacked under WORK_DIR, never installed), buildah; a venv with grpcio,
# grpcio-tools (compiles Kubernetes' CRI api.proto, from Debian's golang-github-kubernetes-cri-api-dev),
# opentelemetry-proto, PyYAML and trustme.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-target}
work=$(realpath -m "${1:-$target/e2e}")
mkdir -p "$work"
step() { echo "e2e-node: $*" >&2; }

if [ "$(id -u)" != 0 ]; then echo "e2e-node.sh: needs root (a container runtime)" >&2; exit 1; fi
missing=()
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
command -v nsenter >/dev/null || missing+=(util-linux)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "venv (grpcio, grpcio-tools, opentelemetry-proto, PyYAML, trustme)"
venv="$work/venv"
requirements="grpcio==1.85.1 grpcio-tools==1.85.1 protobuf==7.36.2 opentelemetry-proto==1.45.2
  PyYAML==6.0.4 trustme==1.2.1"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.netshim-requirements" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
  echo "$requirements" > "$venv/.netshim-requirements"
fi

step "runtimes: containerd 1.6 (Debian 12), 1.7 (trixie), 2.x (sid)"
assets=$(./scripts/cri-test-assets.sh "$target/cri-assets")
runtimes=$(./scripts/containerd-versions.sh "$target/containerd-versions")

step "CRI api.proto (Debian's golang-github-kubernetes-cri-api-dev, trixie) compiled with grpcio-tools"
# Kubernetes' own CRI definition, from the same private trixie/sid apt state that
# scripts/containerd-versions.sh made (never installed: unpacked under WORK_DIR).
cri_api="$work/cri-api"
proto="$cri_api/usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto"
if [ ! -f "$proto" ]; then
  apt_dir=$(realpath "$target/containerd-versions/apt")
  A=(-o Dir::Etc::SourceList="$apt_dir/newer.sources" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o APT::Sandbox::User=root)
  rm -rf "$work/cri-api-download"; mkdir -p "$work/cri-api-download"
  if ! (cd "$work/cri-api-download" && apt-get "${A[@]}" -qq download golang-github-kubernetes-cri-api-dev/trixie 2>/dev/null); then
    apt-get "${A[@]}" -qq update >&2
    (cd "$work/cri-api-download" && apt-get "${A[@]}" -qq download golang-github-kubernetes-cri-api-dev/trixie)
  fi
  dpkg-deb -x "$work"/cri-api-download/*.deb "$cri_api"
  rm -rf "$work/cri-api-download"
fi
stubs="$work/cri-stubs"
if [ ! -f "$stubs/api_pb2_grpc.py" ] || [ "$proto" -nt "$stubs/api_pb2_grpc.py" ]; then
  rm -rf "$stubs"; mkdir -p "$stubs"
  # gogoproto's options only steer Go code generation; grpcio-tools has no gogo.proto.
  sed '/gogoproto/d' "$proto" > "$stubs/api.proto"
  "$venv/bin/python" -m grpc_tools.protoc -I"$stubs" --python_out="$stubs" --grpc_python_out="$stubs" "$stubs/api.proto"
fi

step "image: scripts/build-image.sh"
archive=${NETSHIM_IMAGE_ARCHIVE:-}
if [ -z "$archive" ]; then
  archive=$(NETSHIM_IMAGE=localhost/netshim:e2e ./scripts/build-image.sh "$work/image" | tail -n 1)
fi
[ -f "$archive" ] || { echo "e2e-node.sh: no image archive at '$archive'" >&2; exit 1; }

step "manifests: kubectl kustomize tests/e2e/overlay (install/kubernetes + image + OTLP)"
kubectl=${KUBECTL:-$(command -v kubectl || true)}
# Without one on the machine: the Debian kubectl that scripts/check-deploy.sh unpacked (the overlay
# uses only what its kustomize v2 reads).
if [ -z "$kubectl" ] && [ -x "$target/deploy-check/tools/kubernetes-client/usr/bin/kubectl" ]; then
  kubectl="$target/deploy-check/tools/kubernetes-client/usr/bin/kubectl"
fi
[ -n "$kubectl" ] || { echo "e2e-node.sh: no kubectl (kustomize); set KUBECTL or run scripts/check-deploy.sh first" >&2; exit 1; }
"$kubectl" kustomize tests/e2e/overlay 2>/dev/null > "$work/manifests.yaml"

wanted=${NETSHIM_E2E_RUNTIMES:-}
scale=${NETSHIM_E2E_SCALE:-50}
failed=0
results=()
last=$(echo "$runtimes" | tail -n 1 | cut -d' ' -f1)
while read -r version bin_dir; do
  [ -n "$version" ] || continue
  if [ -n "$wanted" ]; then
    keep=0; for w in $wanted; do case "$version" in "$w"*) keep=1 ;; esac; done
    [ $keep = 1 ] || continue
  fi
  run_scale=0; [ "$version" = "$last" ] && run_scale=$scale
  step "containerd $version: the DaemonSet and application pods (scale $run_scale)"
  run="$work/run-$version"
  rm -rf "$run"; mkdir -p "$run"
  # A mount namespace of its own: / made shared inside it (as on a systemd node, so that
  # HostToContainer mounts are allowed) and a tmpfs on /run/containerd, so that nothing the runtime
  # mounts reaches the machine, and no other containerd's socket is in the way.
  mkdir -p /run/containerd
  set +e
  summary=$(unshare --mount --propagation unchanged -- sh -c '
      mount --make-rshared / && mount -t tmpfs -o mode=0711 e2e-containerd /run/containerd && exec "$@"' sh \
    "$venv/bin/python" tests/e2e/kubelet.py --label "$version" --containerd-bin "$bin_dir" \
      --manifests "$work/manifests.yaml" --image-archive "$archive" \
      --pause-archive "$assets/pause-oci.tar" --cri-stubs "$stubs" \
      --otlp-sink "$root/tests/otlp/otlp_sink.py" --work "$run" --scale "$run_scale" | tail -n 1)
  code=$?
  set -e
  results+=("$("$venv/bin/python" -c 'import json, sys; print(json.loads(sys.argv[2])["line"])' \
    "$version" "$summary" 2>/dev/null || echo "containerd $version: FAILED before a summary (see $run)")")
  [ $code = 0 ] || failed=1
done <<< "$runtimes"

echo
for line in "${results[@]}"; do echo "e2e-node: $line"; done
[ ${#results[@]} -gt 0 ] || { echo "e2e-node: no runtime ran" >&2; exit 1; }
exit $failed
