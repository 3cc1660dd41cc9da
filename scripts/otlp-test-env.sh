#!/usr/bin/env bash
# Prepares the Python side of the OTLP exporter tests (tests/otlp.rs) and prints the venv path
# to export as NETSHIM_OTLP_VENV: a venv in OUT_DIR/venv with grpcio and opentelemetry-proto
# (for tests/otlp/otlp_sink.py, the recording sink) and rotel (a real OTLP collector, shipped
# as a PyPI wheel with its `rotel-agent` binary inside). Installs python3-venv from Debian
# when missing. Versions are pinned to ones that install on Debian 12's Python 3.11; pip runs
# only when the pins change or the venv is incomplete.
# usage: scripts/otlp-test-env.sh OUT_DIR
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUT_DIR}")
venv="$out/venv"
requirements="grpcio==1.85.3 protobuf==7.36.2 opentelemetry-proto==1.45.2 rotel==0.0.1a15"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "installing: python3-venv" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

mkdir -p "$out"
stamp="$venv/.netshim-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
  echo "$requirements" > "$stamp"
fi

# The sink's imports, and the collector binary inside the rotel wheel.
"$venv/bin/python" -c 'import grpc; from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc' >&2
rotel=$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
[ -x "$rotel" ] || { echo "otlp-test-env: no rotel-agent at $rotel" >&2; exit 1; }
echo "$venv"
