#!/usr/bin/env bash
# Prepares what the containerd end-to-end tests need and prints the folder holding it:
# Debian's containerd, runc and CNI plugins (installed when missing), and an offline sandbox
# image (a static pause binary packed as an OCI archive; no registry is reachable here).
# usage: scripts/cri-test-assets.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:?usage: $0 OUT_DIR}")
mkdir -p "$out"

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/ptp ] && [ -x /usr/lib/cni/host-local ] \
  || missing+=(containernetworking-plugins)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/include/signal.h ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# No systemd here, but if a packaged containerd was started, the tests use their own anyway.

if [ ! -f "$out/pause-oci.tar" ] || [ "$here/tests/cri/pause.c" -nt "$out/pause-oci.tar" ]; then
  gcc -static -Os -s -o "$out/pause" "$here/tests/cri/pause.c"
  python3 "$here/tests/cri/oci_image.py" "$out/pause" localhost/netshim-pause:test "$out/pause-oci.tar"
fi
echo "$out"
