#!/usr/bin/env bash
# Regenerates the seed corpora fuzz/corpus/<target>/ from tiny qemu-made images (and AeroSparse
# images made by make-aerosparse.py), a few KiB each, so that the corpora stay small in the
# repository. Needs qemu-img, qemu-io and python3.
#
#   fuzz/seed.sh                 # replaces the seeds; files the fuzzers added are kept
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
shared=${SHARED_FIXTURES:-$here/../../shared/fixtures}
[ -f "$shared/make-aerosparse.py" ] || shared=/work/shared/fixtures
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
q() { qemu-io "$@" >/dev/null; }
seed() { mkdir -p "corpus/$1"; cp "$2" "corpus/$1/seed-$(basename "$2")"; }
rm -f corpus/*/seed-*

# A 64 KiB guest image with data, a zero run and data in the last sector.
W=(-c 'write -P 0xab 0 4k' -c 'write -P 0xcd 20k 1k' -c 'write -z 32k 4k' -c 'write -P 0xef 63k 1k')
qemu-img create -q -f raw "$tmp/src.raw" 64k
q -f raw "${W[@]}" "$tmp/src.raw"

# raw: any bytes are a raw disk; a few sizes around the sector size.
head -c 4096 "$tmp/src.raw" > "$tmp/4k.raw"; seed format_raw "$tmp/4k.raw"
head -c 1000 /dev/zero | tr '\0' '\253' > "$tmp/odd.raw"; seed format_raw "$tmp/odd.raw"
: > "$tmp/empty.raw"; seed format_raw "$tmp/empty.raw"

# qcow2: v2 and v3, 512-byte clusters, zero clusters, 64-bit refcounts, extended L2,
# deflate and zstd compression, a backing file reference, an internal snapshot, a huge disk.
mk() { local f=$tmp/$1.qcow2; shift; qemu-img create -q -f qcow2 -o "$1" "$f" "$2"; shift 2
       [ $# -eq 0 ] || q -f qcow2 "$@" "$f"; seed format_qcow2 "$f"; }
mk v2 compat=0.10,cluster_size=512 64k "${W[@]}"
mk v3 compat=1.1,cluster_size=512 64k "${W[@]}"
mk v3-rc64 compat=1.1,cluster_size=4096,refcount_bits=64,lazy_refcounts=on 64k "${W[@]}"
mk v3-extl2 compat=1.1,cluster_size=16k,extended_l2=on 64k "${W[@]}"
mk big compat=1.1 1T
qemu-img create -q -f qcow2 -o cluster_size=512 "$tmp/base.qcow2" 64k
(cd "$tmp" && qemu-img create -q -f qcow2 -o cluster_size=512 -b base.qcow2 -F qcow2 overlay.qcow2)
q -f qcow2 -c 'write -P 0x11 4k 1k' "$tmp/overlay.qcow2"; seed format_qcow2 "$tmp/overlay.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=512 "$tmp/snap.qcow2" 64k
q -f qcow2 -c 'write -P 0x01 0 2k' "$tmp/snap.qcow2"
qemu-img snapshot -c first "$tmp/snap.qcow2"
q -f qcow2 -c 'write -P 0x02 0 512' "$tmp/snap.qcow2"; seed format_qcow2 "$tmp/snap.qcow2"
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4096 "$tmp/src.raw" "$tmp/comp-deflate.qcow2"
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4096,compression_type=zstd \
  "$tmp/src.raw" "$tmp/comp-zstd.qcow2"
qemu-img convert -q -c -f raw -O qcow2 -o compat=0.10,cluster_size=4096 "$tmp/src.raw" "$tmp/comp-v2.qcow2"
for f in comp-deflate comp-zstd comp-v2; do seed format_qcow2 "$tmp/$f.qcow2"; done

# vhd: fixed and dynamic. qemu makes 2 MiB blocks; the dynamic seed is rewritten with 4 KiB
# blocks (a power of two, which qemu reads too) so that it holds data and stays small.
qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on "$tmp/src.raw" "$tmp/fixed.vhd"
seed format_vhd "$tmp/fixed.vhd"
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$tmp/empty-dynamic.vhd" 64k
seed format_vhd "$tmp/empty-dynamic.vhd"
python3 - "$tmp/empty-dynamic.vhd" "$tmp/src.raw" "$tmp/dynamic.vhd" <<'EOF'
import struct, sys
vhd, raw, out = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
def checksum(b, at):
    b = bytearray(b); b[at:at + 4] = bytes(4)
    return struct.pack(">I", ~sum(b) & 0xffffffff)
footer = vhd[-512:]
hdr_at = struct.unpack(">Q", footer[16:24])[0]
hdr = bytearray(vhd[hdr_at:hdr_at + 1024])
bat_at = struct.unpack(">Q", hdr[16:24])[0]
bs = 4096
entries = len(raw) // bs
hdr[28:36] = struct.pack(">II", entries, bs)
hdr[36:40] = checksum(hdr, 36)
image = bytearray(vhd[:hdr_at]) + hdr
image += bytes(bat_at - len(image))
bat, blocks = [], bytearray()
data_at = bat_at + 512
for i in range(entries):
    block = raw[i * bs:(i + 1) * bs]
    if not block.strip(b"\0"):
        bat.append(0xffffffff); continue
    bat.append((data_at + len(blocks)) // 512)
    blocks += b"\xff" + bytes(511) + block          # sector bitmap (8 sectors) + data
image += struct.pack(">%dI" % entries, *bat).ljust(512, b"\xff") + blocks + footer
open(out, "wb").write(image)
EOF
qemu-img convert -q -f vpc -O raw "$tmp/dynamic.vhd" "$tmp/check.raw"
cmp -s "$tmp/check.raw" "$tmp/src.raw" || { echo "seed.sh: dynamic.vhd does not read as src.raw" >&2; exit 1; }
seed format_vhd "$tmp/dynamic.vhd"

# aerosparse: 512-byte and 4 KiB blocks, stored in order and shuffled.
python3 "$shared/make-aerosparse.py" --block-size 512 "$tmp/src.raw" "$tmp/b512.aerosparse"
python3 "$shared/make-aerosparse.py" --block-size 4096 --shuffle 7 "$tmp/src.raw" "$tmp/b4k.aerosparse"
for f in b512 b4k; do seed format_aerosparse "$tmp/$f.aerosparse"; done

# vmdk: monolithicSparse (64 KiB grains: written data makes it about 70 KiB) and
# streamOptimized (compressed grains, footer).
qemu-img create -q -f raw "$tmp/grain.raw" 64k
q -f raw -c 'write -P 0xab 0 4k' -c 'write -P 0xcd 60k 512' "$tmp/grain.raw"
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse "$tmp/grain.raw" "$tmp/sparse.vmdk"
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$tmp/empty.vmdk" 1M
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized "$tmp/src.raw" "$tmp/stream.vmdk"
for f in sparse empty stream; do seed format_vmdk "$tmp/$f.vmdk"; done

du -sh corpus/* | sed 's/^/seed.sh: /'
