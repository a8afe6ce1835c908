#!/usr/bin/env bash
# Builds a small bootable Linux disk from Debian's packages, for boot tests and benchmarks:
#   OUT/disk.raw     an ext4 file system (no partition table) holding a bookworm minbase tree
#   OUT/vmlinuz      the kernel and
#   OUT/initrd.img   its initramfs (virtio-blk and ext4), for a direct kernel boot
#   OUT/append       the kernel command line to boot it with
# The guest's init (/sbin/aero-init) checks the sha256 of every file under /usr/bin and
# /usr/sbin (listed at build time), prints `AERO-BOOT-OK` (or `AERO-BOOT-FAIL`) at the start of
# a line on the serial console, and powers off. Boot it with:
#   qemu-system-x86_64 -machine pc,accel=tcg -m 512 -nodefaults -no-reboot -display none \
#     -serial stdio -kernel OUT/vmlinuz -initrd OUT/initrd.img -append "$(cat OUT/append)" \
#     -drive file=OUT/disk.raw,format=raw,if=virtio,readonly=on
#
# The result is cached: OUT/key holds the sha256 of this script, and a re-run with the same
# script returns at once. A build goes to OUT.tmp and is renamed into place, so OUT is either
# complete or absent; an flock on OUT.lock lets concurrent callers wait for one build.
# Needs root (debootstrap); installs debootstrap and e2fsprogs when missing.
#
#   bench/lib/make-boot-disk.sh OUT
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
out=$(realpath -m "$1")
key=$(sha256sum "$0" | cut -d' ' -f1)
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "$0: debootstrap needs root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
need() { # COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "$2" >&2
}
need debootstrap debootstrap
need mkfs.ext4 e2fsprogs

# The mirror apt uses here (deb822 or one-line sources), else Debian's default.
mirror=$(sed -n 's|^URIs: \(http[^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's|^deb \(http[^ ]*/debian\)/* .*|\1|p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

tmp=$out.tmp
rm -rf "$tmp" "$out"
mkdir -p "$tmp/tree"
tree=$tmp/tree
# Before debootstrap unpacks anything: a small initramfs holding only what a virtio-blk ext4
# root needs (not conffiles, so dpkg leaves them alone), and dpkg without fsyncs.
mkdir -p "$tree/etc/initramfs-tools/conf.d" "$tree/usr/share/initramfs-tools/modules.d" "$tree/etc/dpkg/dpkg.cfg.d"
printf 'MODULES=list\n' > "$tree/etc/initramfs-tools/conf.d/aero-boot.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' > "$tree/usr/share/initramfs-tools/modules.d/aero-boot"
printf 'force-unsafe-io\n' > "$tree/etc/dpkg/dpkg.cfg.d/aero-boot"
debootstrap --variant=minbase --include=linux-image-amd64 bookworm "$tree" "$mirror" > "$tmp/debootstrap.log" 2>&1 ||
  { tail -30 "$tmp/debootstrap.log" >&2; echo "$0: debootstrap failed (log: $tmp/debootstrap.log)" >&2; exit 1; }

cp "$(realpath "$tree/vmlinuz")" "$tmp/vmlinuz"
cp "$(realpath "$tree/initrd.img")" "$tmp/initrd.img"
# The guest needs neither the kernel's files nor documentation, caches or package lists.
rm -rf "$tree"/boot/* "$tree"/usr/lib/modules "$tree"/usr/share/doc "$tree"/usr/share/man \
  "$tree"/usr/share/locale "$tree"/usr/share/info "$tree"/var/cache/apt/* "$tree"/var/lib/apt/lists/* \
  "$tree"/vmlinuz* "$tree"/initrd.img*

cat > "$tree/sbin/aero-init" <<'INIT'
#!/bin/sh
# Checks the files listed at build time, prints the result on the console, powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
if sha256sum --quiet -c /etc/aero-boot.sha256 >/dev/null 2>&1; then result=OK; else result=FAIL; fi
# Built here, so that the kernel's echo of its command line can never match it.
printf 'AERO-BOOT-%s\n' "$result"
echo o > /proc/sysrq-trigger
sleep 10
INIT
chmod 755 "$tree/sbin/aero-init"
(cd "$tree" && find usr/bin usr/sbin -type f -print0 | sort -z | xargs -0 sha256sum) > "$tree/etc/aero-boot.sha256"

mkfs.ext4 -q -F -L aero-boot -d "$tree" "$tmp/disk.raw" 256M >/dev/null
printf 'root=/dev/vda ro console=ttyS0 init=/sbin/aero-init panic=-1 quiet\n' > "$tmp/append"
rm -rf "$tree" "$tmp/debootstrap.log"
echo "$key" > "$tmp/key"
mv "$tmp" "$out"
