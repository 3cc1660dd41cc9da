#!/usr/bin/env bash
# Unpacks one package of a newer Debian suite (trixie, sid) without installing it, and prints the
# folder it is unpacked in: OUT_DIR/PACKAGE-SUITE (its usr/bin/… are the package's files).
# Fetched with `apt-get download` through a private apt state under OUT_DIR/apt (its own deb822
# sources, lists and cache: the machine's sources and packages are untouched) and unpacked with
# `dpkg-deb -x`. A package already unpacked is reused without any network access.
#
# usage: scripts/debian-unpack.sh OUT_DIR SUITE PACKAGE
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUT_DIR SUITE PACKAGE}")
suite=${2:?usage: $0 OUT_DIR SUITE PACKAGE}
package=${3:?usage: $0 OUT_DIR SUITE PACKAGE}
die() { echo "debian-unpack.sh: $*" >&2; exit 1; }

dir="$out/$package-$suite"
if [ -f "$dir/.deb-version" ]; then
  echo "$dir"
  exit 0
fi
if [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
  echo "installing: debian-archive-keyring" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null \
    || die "cannot install debian-archive-keyring"
fi
apt_dir="$out/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
# The file name must end in .sources for apt to read the deb822 format.
cat > "$apt_dir/newer.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
A=(-o Dir::Etc::SourceList="$apt_dir/newer.sources" -o Dir::Etc::SourceParts=/dev/null
   -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
   -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
   -o APT::Sandbox::User=root -o Acquire::Retries=3)
candidate() {
  apt-cache "${A[@]}" madison "$package" 2>/dev/null \
    | awk -F'|' -v s="$suite" '$3 ~ "/debian "s"/" {gsub(/ /, "", $2); print $2; exit}'
}
version=$(candidate)
if [ -z "$version" ]; then
  echo "debian-unpack.sh: apt-get update of the private trixie/sid state (about 40 MB)" >&2
  apt-get "${A[@]}" -qq --error-on=any update >&2 \
    || die "apt-get update of trixie/sid failed (private state $apt_dir; is deb.debian.org reachable?)"
  version=$(candidate)
fi
[ -n "$version" ] || die "Debian $suite offers no $package package"
work="$apt_dir/download-$package-$suite"
rm -rf "$work" && mkdir -p "$work"
(cd "$work" && apt-get "${A[@]}" -qq download "$package=$version" >&2 2>"$work/err") \
  || die "apt-get download $package=$version ($suite) failed: $(cat "$work/err")"
deb=$(ls "$work"/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "apt-get download $package=$version left no .deb in $work"
rm -rf "$dir.new"
dpkg-deb -x "$deb" "$dir.new" || die "dpkg-deb -x $deb failed"
echo "$version" > "$dir.new/.deb-version"
rm -rf "$dir" && mv "$dir.new" "$dir"
rm -rf "$work"
echo "$dir"
