#!/usr/bin/env bash
# Builds netshim's container image from deploy/Dockerfile with no registry and no Docker
# engine, and prints the path of an OCI image archive (oci-archive: oci-layout, index.json,
# blobs/) as its last line; progress goes to stderr.
#
#   scripts/build-image.sh [OUT_DIR]        (default target/image)
#   NETSHIM_IMAGE=REGISTRY/netshim:TAG scripts/build-image.sh   (default localhost/netshim:VERSION)
#
# How: the binary is built beside the Dockerfile (the toolchain here has no musl target): glibc,
# +crt-static (a static-pie), stripped, in a target folder of its own (target/image-build) so
# the shared target/ cache is not invalidated. Then buildah (Debian 12's, installed when
# missing) builds deploy/Dockerfile with BINARY_STAGE=prebuilt from a context made here, in a
# network namespace with no network (unshare --net) and --pull=never, with a storage root of
# its own under OUT_DIR (vfs driver, removed afterwards), and writes the archive. The archive
# is importable with `ctr -n k8s.io images import` under the image's name. Last,
# scripts/check-image.py compares the archive with the Dockerfile's final stage and fails on
# any difference.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$here/target/image}")
started=$(date +%s)
log() { echo "build-image: $*" >&2; }

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v file >/dev/null || missing+=(file)
command -v python3 >/dev/null || missing+=(python3)
command -v unshare >/dev/null || missing+=(util-linux)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n1)
revision=$(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$here" status --porcelain -- src Cargo.toml Cargo.lock config deploy 2>/dev/null)" ]; then
  log "note: the work tree differs from $revision (the label says $revision all the same)"
fi
image=${NETSHIM_IMAGE:-localhost/netshim:$version}
case "$(uname -m)" in
  x86_64) rust_target=x86_64-unknown-linux-gnu; arch=amd64 ;;
  aarch64) rust_target=aarch64-unknown-linux-gnu; arch=arm64 ;;
  *) echo "build-image: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

# 1. The binary: static, stripped, in its own target folder.
build_dir=${NETSHIM_IMAGE_CARGO_TARGET_DIR:-$here/target/image-build}
log "cargo build --release --target $rust_target (static, stripped) in $build_dir"
t0=$(date +%s)
(cd "$here" && CARGO_TARGET_DIR="$build_dir" RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --bin netshim --target "$rust_target" >&2)
log "cargo build: $(( $(date +%s) - t0 )) s"
binary=$build_dir/$rust_target/release/netshim
kind=$(file -b "$binary")
case "$kind" in
  *"statically linked"*|*static-pie*) log "binary: $kind" ;;
  *) echo "build-image: $binary is not static: $kind" >&2; exit 1 ;;
esac

# 2. The build context: only what the prebuilt and final stages copy.
rm -rf "$out/context" "$out/storage" "$out/tmp"
mkdir -p "$out/context/deploy/prebuilt/etc/ssl/certs" "$out/tmp"
cp "$binary" "$out/context/deploy/prebuilt/netshim"
cp -L /etc/ssl/certs/ca-certificates.crt "$out/context/deploy/prebuilt/etc/ssl/certs/"
cp "$here/deploy/config.yaml" "$out/context/deploy/config.yaml"

# 3. buildah, offline, on a private storage.
storage=$out/storage
cleanup() {
  buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs \
    rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$storage" "$out/tmp"
}
trap cleanup EXIT
bh=(buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
archive=$out/netshim-$version-$arch.oci.tar
rm -f "$archive"
created=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)
log "buildah bud -f deploy/Dockerfile --build-arg BINARY_STAGE=prebuilt -t $image (no network)"
# unshare --net: a namespace with only a loopback that is down; nothing can be fetched.
TMPDIR=$out/tmp BUILDAH_FORMAT=oci unshare --net -- "${bh[@]}" bud --quiet \
  --file "$here/deploy/Dockerfile" \
  --pull=never --network none --layers=false --identity-label=false --timestamp "$created" \
  --platform "linux/$arch" \
  --build-arg BINARY_STAGE=prebuilt \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --tag "$image" \
  "$out/context" >&2
TMPDIR=$out/tmp unshare --net -- "${bh[@]}" push --quiet --format oci \
  "$image" "oci-archive:$archive:$image" >&2
cleanup
trap - EXIT

# 4. containerd names an imported image by io.containerd.image.name; buildah writes only
#    org.opencontainers.image.ref.name. Add the former (the archive is rewritten, same blobs).
python3 "$here/scripts/check-image.py" --annotate "$image" "$archive" >&2

# 5. The archive against the Dockerfile's final stage.
python3 "$here/scripts/check-image.py" "$archive" \
  --dockerfile "$here/deploy/Dockerfile" --context "$out/context" \
  --image "$image" --build-arg BINARY_STAGE=prebuilt --build-arg VERSION="$version" --build-arg REVISION="$revision" >&2
log "done in $(( $(date +%s) - started )) s"
echo "$archive"
