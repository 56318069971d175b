#!/usr/bin/env bash
# Run a command as root inside a small qemu VM whose kernel has device-mapper.
#
#   test/vm/run.sh <command...>
#   test/vm/run.sh --prepare      install the tools, fetch the kernel and build the initramfs; boot nothing
#
# The guest boots a Debian kernel (dm-mod, dm-thin-pool, loop, ... as modules) from a busybox initramfs,
# mounts this machine's / read-only over 9p, mounts the project folder writable at the same path, chroots
# there and runs the command in the project folder. Its output comes back on the serial console; its exit
# code is this script's exit code. Kernel and initramfs are cached in $DEVMAPPER_VM_CACHE, one folder per kernel.
#
# DEVMAPPER_VM_KERNEL picks the kernel, from Debian's archive:
#   6.1 (the default)   the kernel linux-image-amd64 depends on
#   6.12                the kernel linux-image-6.12-amd64 depends on
#   <release>           that exact package, linux-image-<release>, e.g. 6.12.117+deb12-amd64
#
# The host's kernel has no device-mapper, so this is the only way the integration tests meet a real one.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
kernel=${DEVMAPPER_VM_KERNEL:-6.1}
case "$kernel" in
  6.1) meta=linux-image-amd64 ;;
  6.12) meta=linux-image-6.12-amd64 ;;
  [0-9]*.*) meta= ;;
  *) echo "vm: DEVMAPPER_VM_KERNEL=$kernel: expected 6.1, 6.12 or a release such as 6.12.117+deb12-amd64" >&2; exit 2 ;;
esac
cache=${DEVMAPPER_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devmapper-vm}/$kernel
mem=${DEVMAPPER_VM_MEM:-2048}
smp=${DEVMAPPER_VM_SMP:-2}
# A bound on a hung guest, not on the suite: a loaded machine runs it at a fraction of its usual speed.
timeout_s=${DEVMAPPER_VM_TIMEOUT:-3600}
# Extra guest kernel parameters (e.g. idle=poll for benchmark experiments).
append_extra=${DEVMAPPER_VM_APPEND:-}

[ $# -gt 0 ] || { echo "usage: $0 <command...>" >&2; exit 2; }

# Modules the guest loads, in this order after their dependencies (modprobe --show-depends gives those).
modules=(virtio_pci 9pnet_virtio 9p crc32c_generic libcrc32c dm-mod dm-bufio dm-bio-prison
         dm-persistent-data dm-thin-pool dm-zero loop dm-flakey dm-delay ext4)

need_tools() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  [ -x /bin/busybox ] && busybox 2>&1 | grep -q static || [ -f /usr/share/doc/busybox-static/copyright ] || missing+=(busybox-static)
  command -v cpio >/dev/null || missing+=(cpio)
  command -v depmod >/dev/null || missing+=(kmod)
  # Newer Debian kernels ship their modules xz-compressed; busybox insmod in the guest takes them plain.
  command -v xz >/dev/null || missing+=(xz-utils)
  # Oracles the tests run in the guest (from this machine's /): dmsetup and thin-provisioning-tools.
  command -v dmsetup >/dev/null || missing+=(dmsetup)
  command -v thin_dump >/dev/null || missing+=(thin-provisioning-tools)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "vm: installing ${missing[*]}" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
      echo "vm: missing tools; run: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 2
    fi
  fi
}

# The kernel package DEVMAPPER_VM_KERNEL names, unpacked (not installed) into the cache.
resolve_kernel() {
  [ -n "$meta" ] || { echo "linux-image-${kernel%-amd64}-amd64"; return; }
  apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

fetch_kernel() {
  mkdir -p "$cache"
  if [ -f "$cache/kver" ] && [ -d "$cache/root/lib/modules/$(cat "$cache/kver")" ]; then return; fi
  local pkg
  pkg=$(resolve_kernel)
  if [ -z "$pkg" ] || ! apt-cache show "$pkg" >/dev/null 2>&1; then apt-get update -qq >&2; pkg=$(resolve_kernel); fi
  [ -n "$pkg" ] || { echo "vm: cannot resolve ${meta:-linux-image-$kernel}" >&2; exit 2; }
  echo "vm: fetching $pkg" >&2
  rm -rf "$cache/root" "$cache"/*.deb
  (cd "$cache" && apt-get download "$pkg" >&2 2>/dev/null) || { echo "vm: cannot download $pkg" >&2; exit 2; }
  dpkg-deb -x "$cache"/linux-image-*.deb "$cache/root"
  rm -f "$cache"/*.deb
  echo "${pkg#linux-image-}" > "$cache/kver"
  depmod -b "$cache/root" "$(cat "$cache/kver")"
}

build_initramfs() {
  local kver=$1 stamp
  stamp=$(cat "$here/init.sh" "$0" | sha256sum | cut -c1-16)-$kver
  [ -f "$cache/initrd.img" ] && [ "$(cat "$cache/initrd.stamp" 2>/dev/null)" = "$stamp" ] && return
  echo "vm: building initramfs" >&2
  local dir; dir=$(mktemp -d)
  mkdir -p "$dir"/{bin,proc,sys,dev,newroot,lib/modules}
  cp /bin/busybox "$dir/bin/busybox"
  local list=() m line
  for m in "${modules[@]}"; do
    # Lines are "insmod <path>" or "builtin <name>"; only the former need copying.
    while read -r verb line; do
      [ "$verb" = insmod ] && [ -n "$line" ] || continue
      case " ${list[*]} " in *" $line "*) ;; *) list+=("$line") ;; esac
    done < <(modprobe -d "$cache/root" -S "$kver" --show-depends "$m")
  done
  : > "$dir/modules"
  local ko
  for line in "${list[@]}"; do
    ko=$(basename "$line"); ko=${ko%.xz}
    case "$line" in
      *.ko.xz) xz -dc "$line" > "$dir/lib/modules/$ko" ;;
      *) cp "$line" "$dir/lib/modules/$ko" ;;
    esac
    echo "/lib/modules/$ko" >> "$dir/modules"
  done
  cp "$here/init.sh" "$dir/init"; chmod +x "$dir/init"
  (cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) > "$cache/initrd.img.tmp"
  mv "$cache/initrd.img.tmp" "$cache/initrd.img"
  echo "$stamp" > "$cache/initrd.stamp"
  rm -rf "$dir"
}

need_tools
fetch_kernel
kver=$(cat "$cache/kver")
build_initramfs "$kver"
[ "$1" != --prepare ] || exit 0

# The command travels as a script in the project folder (the kernel command line is too small for it).
# One folder per invocation, so several VMs can run side by side.
run=$project/.vm-run/$$
rm -rf "$run"
mkdir -p "$run"
trap 'rm -rf "$run"' EXIT
{
  echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp CI=true DEVMAPPER_IN_VM=1"
  for v in $(compgen -e | grep -E '^(DEVMAPPER_|BENCH_|JEST_|NODE_OPTIONS$)' || true); do printf 'export %s=%q\n' "$v" "${!v}"; done
  printf 'cd %q\n' "$PWD"
  printf '%q ' "$@"; echo
} > "$run/cmd.sh"

accel_note=""
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m "$mem" -smp "$smp" -nographic -no-reboot -nic none \
  -kernel "$cache/root/boot/vmlinuz-$kver" -initrd "$cache/initrd.img" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 devmapper.project=$project devmapper.run=$run $append_extra" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs local,path="$project",mount_tag=project,security_model=passthrough,multidevs=remap \
  < /dev/null
qrc=$?
set -e
if [ ! -f "$run/rc" ]; then
  echo "vm: the guest did not report an exit code (qemu exit $qrc)$accel_note" >&2
  exit 125
fi
rc=$(cat "$run/rc")
exit "$rc"
