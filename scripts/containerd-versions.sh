#!/usr/bin/env bash
# Gets the containerd versions the tests run against and prints one line per runtime,
# `VERSION BIN_DIR`, oldest first:
#   1.6.x  /usr/bin                        Debian 12's, installed into the system when missing
#   1.7.x  OUT_DIR/containerd-1.7/usr/bin  Debian 13 (trixie), e.g. 1.7.24
#   2.x    OUT_DIR/containerd-2/usr/bin    Debian sid, e.g. 2.1.9
# The newer two are fetched with `apt-get download` through a private apt state under OUT_DIR
# (its own deb822 sources, lists and cache; the machine's sources and packages are untouched)
# and unpacked with `dpkg-deb -x`; never installed. A version already unpacked is reused
# without any network access.
#
# To run containerd VERSION from BIN_DIR, put BIN_DIR first on PATH: containerd looks for
# `containerd-shim-runc-v2` on PATH before its own folder, and would use 1.6's shim otherwise.
# runc stays Debian 12's /usr/bin/runc 1.1.5 for all three (trixie's and sid's need GLIBC_2.38).
#
# usage: scripts/containerd-versions.sh OUT_DIR
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUT_DIR}")
mkdir -p "$out"

die() { echo "containerd-versions.sh: $*" >&2; exit 1; }

# What each suite must give: the series the tests expect (their event behaviour differs by series).
#   suite   series  folder
suites=("trixie 1.7. containerd-1.7" "sid 2. containerd-2")

# Debian 12's containerd (1.6) and runc: the oldest runtime, and the runc of all three.
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq || die "apt-get update failed (is deb.debian.org reachable?)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "cannot install ${missing[*]}"
fi

# "containerd github.com/containerd/containerd v1.6.20~ds1 ..." -> 1.6.20
upstream() { sed -E 's/^v//; s/[~+-].*//' <<<"$1"; }
binary_version() {
  "$1" --version 2>/dev/null | awk '{print $3; exit}'
}

apt_dir="$out/apt"
A=(-o Dir::Etc::SourceList="$apt_dir/newer.sources" -o Dir::Etc::SourceParts=/dev/null
   -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
   -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
   -o APT::Sandbox::User=root -o Acquire::Retries=3)
apt_ready=0
apt_prepare() {
  [ "$apt_ready" = 1 ] && return
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  # The file name must end in .sources for apt to read the deb822 format.
  cat > "$apt_dir/newer.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_ready=1
}
apt_update() {
  echo "containerd-versions.sh: apt-get update of the private trixie/sid state (about 40 MB)" >&2
  apt-get "${A[@]}" -qq --error-on=any update >&2 \
    || die "apt-get update of trixie/sid failed (private state $apt_dir; is deb.debian.org reachable?)"
}
# The version of containerd SUITE offers, or "" when the lists do not know it.
candidate() {
  apt-cache "${A[@]}" madison containerd 2>/dev/null \
    | awk -F'|' -v s="$1" '$3 ~ "/debian "s"/" {gsub(/ /, "", $2); print $2; exit}'
}

fetch() { # suite series folder
  local suite=$1 series=$2 dir="$out/$3"
  local stamp="$dir/.deb-version"
  if [ -f "$stamp" ] && [ -x "$dir/usr/bin/containerd" ] \
     && [[ "$(upstream "$(cat "$stamp")")" == "$series"* ]]; then
    return # unpacked before, with a version of the expected series
  fi
  apt_prepare
  local version
  version=$(candidate "$suite")
  if [ -z "$version" ]; then
    apt_update
    version=$(candidate "$suite")
  fi
  [ -n "$version" ] || die "Debian $suite offers no containerd package (lists in $apt_dir/lists)"
  [[ "$(upstream "$version")" == "$series"* ]] \
    || die "Debian $suite offers containerd $version, not the ${series}x the tests expect"
  local work="$apt_dir/download-$suite"
  rm -rf "$work" && mkdir -p "$work"
  if ! (cd "$work" && apt-get "${A[@]}" -qq download "containerd=$version" >&2 2>"$work/err"); then
    # The lists may be stale (a newer build replaced that one): update once and retry.
    apt_update
    version=$(candidate "$suite")
    [[ "$(upstream "$version")" == "$series"* ]] \
      || die "Debian $suite offers containerd '$version', not the ${series}x the tests expect"
    (cd "$work" && apt-get "${A[@]}" -qq download "containerd=$version" >&2 2>"$work/err") \
      || die "apt-get download containerd=$version ($suite) failed: $(cat "$work/err")"
  fi
  local deb
  deb=$(ls "$work"/containerd_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || die "apt-get download containerd=$version ($suite) left no .deb in $work"
  rm -rf "$dir.new"
  dpkg-deb -x "$deb" "$dir.new" || die "dpkg-deb -x $deb failed"
  [ -x "$dir.new/usr/bin/containerd" ] && [ -x "$dir.new/usr/bin/containerd-shim-runc-v2" ] \
    || die "$deb holds no usr/bin/containerd and containerd-shim-runc-v2"
  echo "$version" > "$dir.new/.deb-version"
  rm -rf "$dir" && mv "$dir.new" "$dir"
  rm -rf "$work"
}

v16=$(binary_version /usr/bin/containerd)
[ -n "$v16" ] || die "/usr/bin/containerd --version printed nothing"
echo "$(upstream "$v16") /usr/bin"
for entry in "${suites[@]}"; do
  read -r suite series folder <<<"$entry"
  fetch "$suite" "$series" "$folder"
  bin="$out/$folder/usr/bin"
  v=$(binary_version "$bin/containerd")
  [ -n "$v" ] || die "$bin/containerd --version printed nothing (does it run on this glibc?)"
  echo "$(upstream "$v") $bin"
done
