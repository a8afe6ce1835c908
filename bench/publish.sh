#!/usr/bin/env bash
# Publishing to the fs backend, 4 MiB chunks, sha256 on, beside reference runs:
#   (a) 1 GiB of random data (raw), --compute-version sha256, vs the machine's limit for that
#       work: max(`openssl dgst -sha256` of the file, `cp` + `fsync` of the file) (target <= 1.5x);
#   (b) an 8 GiB qcow2 holding 256 MiB of data, with --image-version and with
#       --compute-version manifest-sha256, vs `qemu-img convert -O raw` (target <= 2x), and vs
#       the same conversion followed by an fsync of its output (the durable work a publish does);
#   peak memory (max RSS) of each publish, which must not grow with the image size.
#
#   bench/publish.sh [WORK_DIR]     # default: target/bench
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/bench}
mkdir -p "$work"
cargo build --release -q -p aero-host
bin=$PWD/target/release/aero-host

source bench/timing.sh
[ -f "$work/random-1g.raw" ] || head -c 1G /dev/urandom > "$work/random-1g.raw"
sparse_qcow2 "$work/sparse-8g.qcow2"

# Publishes IMAGE three times with the version flags VERSION_ARGS, each to a new fs store
# (deleting thousands of files right before a run would time the file system's cleanup, not the
# publish): prints "<best seconds> <max RSS KiB>".
publish() {
  local image=$1 out=$2 version_args=$3 best="" rss=0 t m run
  for run in 1 2 3; do
    sync
    # shellcheck disable=SC2086
    /usr/bin/time -f '%e %M' -o "$work/time.txt" "$bin" publish --storage "fs:$out-$run" --file "$image" \
      --prefix images/bench/ $version_args --chunk-size 4194304 --checksum sha256 --json >/dev/null
    read -r t m < "$work/time.txt"
    best=$(python3 -c "print(min(float('$t'), float('${best:-$t}')))")
    rss=$(( m > rss ? m : rss ))
  done
  rm -rf "$out"-1 "$out"-2 "$out"-3
  echo "$best $rss"
}

# COMMAND..., then an fsync of FILE (the command's output): as durable as a publish.
#   durable FILE COMMAND...
durable() { "${@:2}" && python3 -c "$fsync_file" "$1"; }
export -f durable
export fsync_file

cat "$work/random-1g.raw" > /dev/null
read -r ours rss1 < <(publish "$work/random-1g.raw" "$work/pub-random" "--compute-version sha256")
sha=$(seconds "$work/no-output" openssl dgst -sha256 "$work/random-1g.raw")
copy=$(seconds "$work/copy.raw" bash -c 'durable "$2" cp "$1" "$2"' _ "$work/random-1g.raw" "$work/copy.raw")
rm -f "$work/copy.raw"
python3 - "$ours" "$sha" "$copy" "$rss1" <<'PY'
import sys
ours, sha, copy, rss = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
limit = max(sha, copy)
print(f"1 GiB random raw, --compute-version sha256: publish {ours:.3f}s; openssl dgst -sha256 {sha:.3f}s, "
      f"cp + fsync {copy:.3f}s; ratio to the max {ours/limit:.2f} (target <= 1.5); peak RSS {rss/1024:.1f} MiB")
PY

cat "$work/sparse-8g.qcow2" > /dev/null
ref=$(seconds "$work/qemu-out.raw" qemu-img convert -f qcow2 -O raw "$work/sparse-8g.qcow2" "$work/qemu-out.raw")
# The same conversion with its output on stable storage, as a publish leaves its chunks: the
# machine's limit for the durable work (an fsync is slow and noisy on this kind of machine).
ref_durable=$(seconds "$work/qemu-out.raw" bash -c 'durable "$2" qemu-img convert -f qcow2 -O raw "$1" "$2"' \
  _ "$work/sparse-8g.qcow2" "$work/qemu-out.raw")
rm -f "$work/qemu-out.raw"
for mode in "--image-version v1" "--compute-version manifest-sha256"; do
  read -r ours rss2 < <(publish "$work/sparse-8g.qcow2" "$work/pub-sparse" "$mode")
  python3 - "$ours" "$ref" "$ref_durable" "$rss2" "$mode" <<'PY'
import sys
ours, ref, durable = (float(a) for a in sys.argv[1:4])
rss, mode = int(sys.argv[4]), sys.argv[5]
print(f"8 GiB qcow2 / 256 MiB data, {mode}: publish {ours:.3f}s, qemu-img convert -O raw {ref:.3f}s; "
      f"ratio {ours/ref:.2f} (target <= 2.0); qemu-img convert + fsync {durable:.3f}s: ratio "
      f"{ours/durable:.2f}; peak RSS {rss/1024:.1f} MiB")
PY
done
echo "memory bound: concurrency 8 x 4 MiB chunks = 32 MiB of chunk buffers, plus the runtime"
