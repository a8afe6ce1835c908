#!/usr/bin/env bash
# Regenerates the seed corpora fuzz/corpus/<target>/ from tiny qemu-made images (and AeroSparse
# images made by make-aerosparse.py), a few KiB each, so that the corpora stay small in the
# repository; the documents' seeds are what aero-host publishes for such an image, the config
# seeds config.example.toml and a few tables, the header seeds typical and broken values.
# Needs qemu-img, qemu-io, python3 and aero-host (AERO_HOST=path, else `cargo run`).
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

# manifest, meta, latest: what `publish` writes for the 64 KiB image, with sha256 and mh1-
# versions, a chunk list without digests, and 4 KiB chunks under a 2-digit index width.
aero() { if [ -n "${AERO_HOST:-}" ]; then "$AERO_HOST" "$@"; else (cd .. && cargo run -q -p aero-host -- "$@"); fi; }
pub() { aero --storage "fs:$tmp/pub" publish --file "$tmp/src.raw" --prefix images/ \
          --image-id "$1" --publish-latest "${@:2}" >/dev/null; }
pub seed --compute-version sha256 --chunk-size 16384
pub mh --compute-version manifest-sha256 --chunk-size 4096
pub plain --image-version v1 --checksum none --chunk-size 65536
for m in "$tmp"/pub/images/*/*/manifest.json; do
  dir=$(dirname "$m"); id=$(basename "$(dirname "$dir")")
  cp "$m" "$tmp/$id-manifest.json"; seed manifest "$tmp/$id-manifest.json"
  cp "$dir/meta.json" "$tmp/$id-meta.json"; seed meta "$tmp/$id-meta.json"
  cp "$tmp/pub/images/$id/latest.json" "$tmp/$id-latest.json"; seed latest "$tmp/$id-latest.json"
done
python3 -c '
import json, sys
m = json.load(open(sys.argv[1])); m["chunkIndexWidth"] = 2
json.dump(m, open(sys.argv[2], "w"), indent=2)' "$tmp"/pub/images/seed/*/manifest.json "$tmp/width2-manifest.json"
seed manifest "$tmp/width2-manifest.json"

# catalog: both shapes, every key, a raw image beside a published one.
printf '%s\n' '{"images":[{"id":"win7","file":"./raw/win7.img","name":"Windows 7","description":"d",' \
  ' "content_type":"application/octet-stream","recommended_chunk_size_bytes":4194304,' \
  ' "chunked_version":"v1","public":false,"etag":"W/\"abc\"","last_modified":"2024-02-29T12:34:56.789+01:00"},' \
  ' {"id":"seed","name":"Published only"}]}' > "$tmp/catalog-wrapped.json"
printf '%s' '[{"id":"a","file":"a.raw","name":"A","etag":"\"1\"","last_modified":"1970-01-01T00:00:00Z"}]' \
  > "$tmp/catalog-bare.json"
for f in wrapped bare; do seed catalog "$tmp/catalog-$f.json"; done

# http_range: the raw header value (the generated half of the target reads the same bytes).
i=0
for r in 'bytes=0-511' 'bytes=-512' 'bytes=1048576-' 'bytes=0-0,5-9,-3' ' Bytes = 00 - 9 ' \
         'items=0-1' 'bytes=5-1' 'bytes=99999999999999999999-' 'bytes=18446744073709551615-'; do
  i=$((i + 1)); printf '%s' "$r" > "$tmp/range-$i"; seed http_range "$tmp/range-$i"
done

# http_conditional: a flags byte (1: weak ETag, 2: Last-Modified known), 8 bytes of seconds
# (1,000,000,000), then If-None-Match, If-Modified-Since and If-Range values, one a line.
cond() { { printf "\\x$1"; printf '\x00\x00\x00\x00\x3b\x9a\xca\x00'; printf '%s' "$2"; } > "$tmp/cond-$3"
         seed http_conditional "$tmp/cond-$3"; }
cond 02 $'"v1-abc", W/"x"\nSun, 09 Sep 2001 01:46:40 GMT\n"v1-abc"' strong
cond 03 $'*\n\nW/"v1-abc"' weak
cond 02 $'\nSun, 09 Sep 2001 01:46:41 GMT\nSun, 09 Sep 2001 01:46:39 GMT' dates
cond 00 $'"a,b", "v1-abc"\nnot a date\ngarbage' lists

# config: the documented example, tables of each kind, and misspelt keys.
cp ../config.example.toml "$tmp/example.toml"; seed config "$tmp/example.toml"
printf '%s\n' '[storage]' 'type = "s3"' 'bucket = "disks"' 'endpoint = "http://127.0.0.1:9000"' \
  'force_path_style = true' '' '[plugins]' 'paths = ["plugins/libformat_vmdk.so"]' \
  'prefer_library = ["vmdk"]' '' '[[publish]]' 'file = "a.qcow2"' 'prefix = "images/"' \
  'image_id = "a"' 'compute_version = "manifest-sha256"' 'chunk_size = 1048576' \
  'verify_chunk_sample = 4' '' '[[publish]]' 'file = "/abs/b.raw"' 'checksum = "none"' \
  'verify = false' '' '[serve]' 'listen_addr = "127.0.0.1:0"' 'max_range_bytes = 1048576' \
  'log_format = "json"' > "$tmp/jobs.toml"
seed config "$tmp/jobs.toml"
printf '%s\n' '[storage]' 'type = "fs"' 'root = "out"' 'bukket = 1' '[[publish]]' 'file = "a"' \
  'chunk_sise = 4096' > "$tmp/misspelt.toml"
seed config "$tmp/misspelt.toml"

du -sh corpus/* | sed 's/^/seed.sh: /'
