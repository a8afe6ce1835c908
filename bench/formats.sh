#!/usr/bin/env bash
# Reading a qcow2 image's guest-visible bytes end to end: `aero-host convert` vs
# `qemu-img convert -O raw`, for (a) 1 GiB of random data and (b) an 8 GiB image holding
# 256 MiB of data. Prints both throughputs (guest bytes per second) and the ratio.
#
#   bench/formats.sh [WORK_DIR]     # default: target/bench
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/bench}
mkdir -p "$work"
cargo build --release -q -p aero-host
bin=target/release/aero-host
source bench/timing.sh

make_images() {
  [ -f "$work/random-1g.qcow2" ] || {
    head -c 1G /dev/urandom > "$work/random-1g.raw"
    qemu-img convert -q -f raw -O qcow2 "$work/random-1g.raw" "$work/random-1g.qcow2"
    rm -f "$work/random-1g.raw"
  }
  sparse_qcow2 "$work/sparse-8g.qcow2"
}

run() {
  local name=$1 image=$2 size
  size=$(qemu-img info --output=json "$image" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  cat "$image" > /dev/null   # warm the page cache for both
  local ours theirs
  ours=$(seconds "$work/out-ours.raw" "$bin" convert "$image" "$work/out-ours.raw")
  theirs=$(seconds "$work/out-qemu.raw" qemu-img convert -f qcow2 -O raw "$image" "$work/out-qemu.raw")
  cmp -s "$work/out-ours.raw" "$work/out-qemu.raw" || { echo "$name: outputs differ!" >&2; exit 1; }
  rm -f "$work/out-ours.raw" "$work/out-qemu.raw"
  python3 - "$name" "$size" "$ours" "$theirs" <<'PY'
import sys
name, size, ours, theirs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
mb = lambda t: size / t / 1e6
print(f"{name}: aero-host {ours:.3f}s ({mb(ours):.0f} MB/s)  qemu-img {theirs:.3f}s ({mb(theirs):.0f} MB/s)  "
      f"time ratio aero-host/qemu-img = {ours / theirs:.2f} (target <= 1.00)")
PY
}

make_images
run "1 GiB random qcow2" "$work/random-1g.qcow2"
run "8 GiB qcow2, 256 MiB data" "$work/sparse-8g.qcow2"
