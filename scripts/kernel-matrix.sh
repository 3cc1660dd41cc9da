#!/usr/bin/env bash
# The kernel matrix: boots Debian's own kernels in QEMU and runs netshim's kernel tests inside
# each, unchanged: tests/kernel_discovery.rs and tests/kernel_topologies.rs (`netshim discover`
# over every pod topology), built here on the host.
#
#   5.10  bullseye (Debian 11)    6.1  bookworm (Debian 12)    6.12  trixie (Debian 13)
#
# The guest boots from an initramfs alone (the test binaries, the host's iproute2 and
# util-linux, busybox, the kernel's modules) and has no network device at all. Software emulation (`-accel tcg`): this machine's /dev/kvm is paravirtual and
# cannot run stock kernels. Kernel packages are fetched once with `apt-get download` through a
# private apt state under WORK (the machine's sources and packages are untouched) and unpacked
# with `dpkg-deb -x`, never installed; every later run is offline.
#
# usage: scripts/kernel-matrix.sh [WORK]          (default: target/kernels)
# env:   NETSHIM_KERNELS   the series to run, default "5.10 6.1 6.12"
#        NETSHIM_VM_MEM    guest memory in MiB, default 1024
#        NETSHIM_VM_TIMEOUT  seconds per kernel before the guest is killed, default 900
# Prints "kernel SERIES (VERSION): ok, …" or "… FAILED …" per kernel; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(realpath -m "${1:-target/kernels}")
series_list=${NETSHIM_KERNELS:-"5.10 6.1 6.12"}
mem=${NETSHIM_VM_MEM:-1024}
vm_timeout=${NETSHIM_VM_TIMEOUT:-900}
mkdir -p "$work"

die() { echo "kernel-matrix.sh: $*" >&2; exit 1; }
for tool in qemu-system-x86_64 cpio depmod modprobe xz zstd python3 objcopy file; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/test.sh installs it)"
done
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
  || die "$busybox is not a static busybox (Debian: busybox-static)"

# What each series must show. The link types it must be able to make (a skip would hide a
# regression) and what it sends as IFLA_LINK for a veth whose ends have equal indexes.
#   series  suite     required kinds         IFLA_LINK (equal indexes)
matrix=(
  "5.10     bullseye  vlan,ipvlan            present"
  "6.1      bookworm  vlan,ipvlan            present"
  "6.12     trixie    vlan,ipvlan,netkit     present"
)
# The modules the tests need (and their dependencies); what a kernel builds in is skipped.
modules="veth macvlan ipvlan 8021q netkit bridge vxlan"

# --- kernel packages, through a private apt state ---------------------------------------------
apt_dir="$work/apt"
A=(-o Dir::Etc::SourceList="$apt_dir/kernels.sources" -o Dir::Etc::SourceParts=/dev/null
   -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
   -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
   -o APT::Sandbox::User=root -o Acquire::Retries=3)
apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  cat > "$apt_dir/kernels.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  echo "kernel-matrix.sh: apt-get update of the private bullseye/bookworm/trixie state" >&2
  apt-get "${A[@]}" -qq update >&2 || die "apt-get update failed (is deb.debian.org reachable?)"
  apt_updated=1
}

# The newest unsigned amd64 image package of SERIES, e.g. linux-image-5.10.0-35-amd64-unsigned.
image_package() {
  local re=${1//./\\.}
  apt-cache "${A[@]}" pkgnames linux-image- 2>/dev/null \
    | grep -E "^linux-image-$re\.[0-9]+(-[0-9]+|\+deb[0-9]+)-amd64-unsigned$" \
    | sort -V | tail -1
}

# Unpacks SERIES under $work/SERIES (reused when there) and prints its kernel version.
kernel_tree() {
  local series=$1 root="$work/$series" pkg version deb
  if [ -f "$root/.version" ]; then
    cat "$root/.version"
    return
  fi
  apt_update
  pkg=$(image_package "$series")
  [ -n "$pkg" ] || die "no linux-image package for $series in the private apt lists"
  version=${pkg#linux-image-}
  version=${version%-unsigned}
  echo "kernel-matrix.sh: downloading $pkg" >&2
  mkdir -p "$work/debs"
  (cd "$work/debs" && apt-get "${A[@]}" -qq download "$pkg" >&2) || die "download of $pkg failed"
  deb=$(ls -t "$work/debs/${pkg}"_*.deb | head -1)
  rm -rf "$root"
  mkdir -p "$root"
  dpkg-deb -x "$deb" "$root"
  # trixie keeps modules only under /usr/lib; modprobe -d wants DIR/lib/modules.
  [ -e "$root/lib/modules" ] || ln -s usr/lib "$root/lib"
  depmod -b "$root" "$version"
  echo "$version" > "$root/.version"
  echo "$version"
}

# --- the guest's initramfs ---------------------------------------------------------------------
# Two archives, concatenated (the kernel unpacks both into one root): the kernel's (busybox, the
# host's iproute2 and util-linux with their libraries, the modules in load order), cached per
# kernel; and the run's (the test binaries, stripped, at their host paths, and the init).
# Everything is in RAM: reading binaries over 9p under emulation took seconds per exec.
copy_with_libs() { # ROOT FILE...
  local root=$1 f lib
  shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+'); do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  done
}

kernel_archive() {
  local series=$1 version=$2 root="$work/$1" out="$work/$1/base.cpio" r kw file name
  [ -s "$out" ] && [ "$out" -nt "$0" ] && { echo "$out"; return; }
  r=$(mktemp -d)
  mkdir -p "$r"/{bin,proc,sys,dev,tmp,run,modules}
  cp "$busybox" "$r/bin/busybox"
  copy_with_libs "$r" "$(command -v ip)" "$(command -v nsenter)" "$(command -v unshare)" \
    /usr/bin/python3
  # Python's standard library without what no test imports (a pod's UDP peer is a script).
  local stdlib
  stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  mkdir -p "$r$stdlib"
  (cd "$stdlib" && tar --exclude=./test --exclude=./idlelib --exclude=./tkinter \
    --exclude=./lib2to3 --exclude=./ensurepip --exclude=./distutils --exclude=./pydoc_data \
    --exclude=./site-packages --exclude=./dist-packages --exclude='./config-*' -cf - .) \
    | tar -xf - -C "$r$stdlib"
  copy_with_libs "$r" "$stdlib"/lib-dynload/*.so
  : > "$r/modules/order"
  for m in $modules; do
    modprobe -d "$root" -S "$version" --show-depends "$m" 2>/dev/null | while read -r kw file _; do
      [ "$kw" = insmod ] || continue # "builtin NAME": nothing to load
      name=$(basename "$file"); name=${name%.xz}; name=${name%.zst}; name=${name%.ko}
      grep -qx "$name" "$r/modules/order" && continue
      case $file in
        *.xz) xz -dc "$file" ;;
        *.zst) zstd -dcq "$file" ;;
        *) cat "$file" ;;
      esac > "$r/modules/$name.ko"
      echo "$name" >> "$r/modules/order"
    done
  done
  (cd "$r" && find . | cpio -o -H newc --quiet) > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$r"
  echo "$out"
}

# The run's archive: the stripped test binaries and netshim at their host paths (the tests find
# the agent at the path cargo compiled into them), the repository's folder to run them in, and an
# init that loads the modules, runs the tests with SETTINGS exported, and prints their status.
run_archive() { # OUT SETTINGS
  local out=$1 settings=$2 r
  r=$(mktemp -d)
  for f in "$discovery" "$topologies" "$agent"; do
    mkdir -p "$r$(dirname "$f")"
    objcopy --strip-debug "$f" "$r$f"
    for lib in $(ldd "$f" | grep -oE '/[^ ]+'); do
      [ -e "$r$lib" ] || { mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"; }
    done
  done
  mkdir -p "$r$repo"
  cat > "$r/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
for m in \$(cat /modules/order); do insmod /modules/\$m.ko || echo "init: insmod \$m failed"; done
ip link set lo up
echo "guest kernel \$(uname -r)"
cd "$repo"
export RUST_BACKTRACE=1 $settings
rc=0
"$discovery" --test-threads=2 || rc=1
"$topologies" --nocapture || rc=1
echo "netshim-matrix-rc=\$rc"
poweroff -f
INIT
  chmod +x "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet) > "$out"
  rm -rf "$r"
}

# --- the tests, built on the host --------------------------------------------------------------
echo "kernel-matrix.sh: building the kernel tests" >&2
binaries=$(cargo test --locked --no-run --test kernel_discovery --test kernel_topologies \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
')
discovery=$(awk '$1 == "kernel_discovery" {print $2}' <<<"$binaries")
topologies=$(awk '$1 == "kernel_topologies" {print $2}' <<<"$binaries")
agent=$repo/target/debug/netshim # CARGO_BIN_EXE_netshim of the tests
[ -x "$discovery" ] && [ -x "$topologies" ] && [ -x "$agent" ] || die "could not build the kernel tests"

# --- one guest per kernel ----------------------------------------------------------------------
failed=0
for series in $series_list; do
  row=$(printf '%s\n' "${matrix[@]}" | awk -v s="$series" '$1 == s')
  [ -n "$row" ] || die "no matrix row for kernel series $series"
  read -r _ _ kinds equal_link <<<"$row"
  version=$(kernel_tree "$series")
  base=$(kernel_archive "$series" "$version")
  run="$work/run-$series"
  rm -rf "$run"
  mkdir -p "$run"
  run_archive "$run/tests.cpio" \
    "NETSHIM_REQUIRE_KINDS=$kinds NETSHIM_EXPECT_EQUAL_INDEX_LINK=$equal_link"
  cat "$base" "$run/tests.cpio" > "$run/initramfs.cpio"
  rm "$run/tests.cpio"
  started=$(date +%s)
  timeout "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m "$mem" \
    -nodefaults -no-user-config -nographic -serial stdio -nic none -no-reboot \
    -kernel "$work/$series/boot/vmlinuz-$version" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1" \
    < /dev/null 2>&1 | tr -d '\r' > "$run/console.log" || true
  rm -f "$run/initramfs.cpio"
  took=$(( $(date +%s) - started ))
  rc=$(sed -n 's/^netshim-matrix-rc=//p' "$run/console.log" | tail -1)
  passed=$(grep -h '^test result:' "$run/console.log" \
    | awk '{p += $4; f += $6} END {printf "%d passed, %d failed", p, f}' || true)
  notes=$(grep -h '^equal indexes:\|SKIPPED' "$run/console.log" | paste -sd ';' || true)
  if [ "$rc" = 0 ]; then
    echo "kernel $series ($version): ok, $passed, ${took}s; $notes"
  else
    failed=1
    echo "kernel $series ($version): FAILED (status: ${rc:-none}), $passed, ${took}s; log: $run/console.log"
    tail -n 80 "$run/console.log"
  fi
done
exit $failed
