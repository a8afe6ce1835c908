#!/usr/bin/env bash
# aero-host pull from nginx (sendfile, 2 workers) on 127.0.0.1, beside reference runs:
#   1. a 1 GiB random image vs `curl -o` of the same raw bytes from the same nginx
#      (target <= 1.2x curl's time; the pull verifies every chunk, checks the whole-disk
#      sha256 of its sha256- version and fsyncs the file; curl does neither), and vs `curl -o`
#      followed by an fsync of its file (the machine's limit for a download left durable)
#   2. an 8 GiB image holding 256 MiB of data: time per data byte vs run 1 (target <= 2x),
#      and `qemu-img convert` of the raw file over HTTP from the same nginx (BENCH_QEMU=1)
#   3. a re-pull from the chunk cache: bytes downloaded and time
#   4. a version with 1% of its chunks changed, through the cache: bytes downloaded and time
#
# Runs 1 and 2 (and their references) are run BENCH_RUNS times (default 3) and the best time
# of each is reported: the machine may be shared.
#
#   bench/pull.sh [WORK_DIR] [SIZE_MIB]     # defaults: target/bench-pull, 1024
#   AERO_BIN=PATH bench/pull.sh …            # an already built binary instead of a release build
#   BENCH_CACHE=0 bench/pull.sh …            # runs 1 and 2 only
#   BENCH_OUT=/dev/shm/pull bench/pull.sh …  # write the pulled files there (tmpfs: no disk noise)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/timing.sh
work=$(realpath -m "${1:-target/bench-pull}")
size_mib=${2:-1024}
runs=${BENCH_RUNS:-3}
for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/pull.sh needs $tool (apt-get install -y nginx curl python3)" >&2; exit 1; }
done
bin=$(aero_bin)
mkdir -p "$work"
store=$work/store
chunk=4194304

publish() { # FILE ID [VERSION_KIND] -> version
  "$bin" publish --storage "fs:$store" --file "$1" --prefix "images/$2/" \
    --compute-version "${3:-sha256}" --publish-latest --chunk-size $chunk --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'
}
now() { date +%s.%N; }
best() { python3 -c 'import sys; print(min(float(a) for a in sys.argv[1:]))' "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

if [ ! -f "$work/big.raw" ]; then
  head -c "${size_mib}M" /dev/urandom > "$work/big.raw.tmp" && mv "$work/big.raw.tmp" "$work/big.raw"
fi
if [ ! -f "$work/sparse.raw" ]; then
  # 8 GiB holding 256 MiB: 64 data chunks of 4 MiB spread over the disk.
  truncate -s 8G "$work/sparse.raw.tmp"
  for i in $(seq 0 63); do
    dd if=/dev/urandom of="$work/sparse.raw.tmp" bs=4M count=1 seek=$((i * 32)) conv=notrunc status=none
  done
  mv "$work/sparse.raw.tmp" "$work/sparse.raw"
fi
rm -rf "$store"
v_big=$(publish "$work/big.raw" big)
v_sparse=$(publish "$work/sparse.raw" sparse)
v_sparse_mh=$(publish "$work/sparse.raw" sparse-mh manifest-sha256)
mkdir -p "$store/raw"
ln -f "$work/big.raw" "$store/raw/big.raw"
ln -f "$work/sparse.raw" "$store/raw/sparse.raw"

port=$(free_port)
ngx=$work/nginx
start_nginx "$ngx" "$store" "$port"
trap 'stop_nginx "$ngx"' EXIT
base=http://127.0.0.1:$port
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/raw/big.raw" -r 0-0)" = 206 ] || { echo "nginx does not serve $store" >&2; exit 1; }

out=${BENCH_OUT:-$work/out}
rm -rf "$out" "$work/cache" && mkdir -p "$out"
pull() { # URL OUT [ARGS...] -> JSON summary
  local url=$1 dst=$2; shift 2
  "$bin" pull "$url" -o "$dst" --json "$@"
}

echo "== 1. ${size_mib} MiB random image (best of $runs)"
curl_runs=(); durable_runs=(); pull_runs=()
for _ in $(seq "$runs"); do
  rm -f "$out/curl.raw" "$out/big.raw"; sync
  t0=$(now); curl -s -o "$out/curl.raw" "$base/raw/big.raw"; t1=$(now)
  # The download on stable storage, as a pull leaves it: the machine's limit for that write.
  python3 -c "$fsync_file" "$out/curl.raw"; t2=$(now)
  curl_runs+=("$(python3 -c "print($t1 - $t0)")")
  durable_runs+=("$(python3 -c "print($t2 - $t0)")")
  rm -f "$out/curl.raw"; sync
  t0=$(now); s1=$(pull "$base/images/big/$v_big/manifest.json" "$out/big.raw" --no-cache); t1=$(now)
  pull_runs+=("$(python3 -c "print($t1 - $t0)")")
  cmp "$out/big.raw" "$work/big.raw"
done
curl_s=$(best "${curl_runs[@]}"); durable_s=$(best "${durable_runs[@]}"); pull_s=$(best "${pull_runs[@]}")
echo "curl -o runs:         ${curl_runs[*]}"
echo "curl -o + fsync runs: ${durable_runs[*]}"
echo "pull runs:            ${pull_runs[*]}"
python3 -c "print(f'curl -o: {$curl_s:.2f} s   aero-host pull: {$pull_s:.2f} s   ratio {$pull_s/$curl_s:.2f}x (target <= 1.2x)')"
python3 -c "print(f'curl -o + fsync: {$durable_s:.2f} s   ratio {$pull_s/$durable_s:.2f}x')"

echo "== 2. 8 GiB image holding 256 MiB (best of $runs)"
rm -f "$out/big.raw"
sparse_runs=()
for _ in $(seq "$runs"); do
  rm -f "$out/sparse.raw"; sync
  t0=$(now); s2=$(pull "$base/images/sparse/$v_sparse/manifest.json" "$out/sparse.raw" --no-cache); t1=$(now)
  sparse_runs+=("$(python3 -c "print($t1 - $t0)")")
done
cmp "$out/sparse.raw" "$work/sparse.raw"
sparse_s=$(best "${sparse_runs[@]}")
echo "pull runs: ${sparse_runs[*]}"
python3 -c "
per_big = $pull_s / ($size_mib * 2**20); per_sparse = $sparse_s / (256 * 2**20)
print(f'pull: {$sparse_s:.2f} s, {$(field "$s2" chunks_zero)} zero chunks never fetched; per data byte {per_sparse/per_big:.2f}x the ${size_mib} MiB pull (target <= 2x)')"
# The same disk with a manifest-sha256 (mh1-) version: no whole-disk sha256 to check.
mh_runs=()
for _ in $(seq "$runs"); do
  rm -f "$out/sparse.raw"; sync
  t0=$(now); pull "$base/images/sparse-mh/$v_sparse_mh/manifest.json" "$out/sparse.raw" --no-cache >/dev/null; t1=$(now)
  mh_runs+=("$(python3 -c "print($t1 - $t0)")")
done
mh_s=$(best "${mh_runs[@]}")
echo "mh1- version, pull runs: ${mh_runs[*]}"
python3 -c "
per_big = $pull_s / ($size_mib * 2**20); per_sparse = $mh_s / (256 * 2**20)
print(f'pull of the mh1- version: {$mh_s:.2f} s; per data byte {per_sparse/per_big:.2f}x the ${size_mib} MiB pull')"
if [ "${BENCH_QEMU:-0}" = 1 ]; then
  # One request in flight (-m 1): with its default of eight, qemu's HTTP driver stalls here.
  t0=$(now); qemu-img convert -m 1 -f raw -O raw "$base/raw/sparse.raw" "$out/qemu.raw"; t1=$(now)
  python3 -c "print(f'qemu-img convert over HTTP: {$t1 - $t0:.2f} s, ratio pull/qemu {$sparse_s/($t1 - $t0):.3f}x')"
  rm -f "$out/qemu.raw"
else
  echo "(qemu-img convert over HTTP of the 8 GiB file: BENCH_QEMU=1)"
fi
rm -f "$out/sparse.raw"

if [ "${BENCH_CACHE:-1}" = 0 ]; then echo "(runs 3 and 4: BENCH_CACHE=1)"; exit 0; fi

echo "== 3. re-pull from the cache"
pull "$base/images/big/$v_big/manifest.json" "$out/fill.raw" --cache-dir "$work/cache" >/dev/null
rm -f "$out/fill.raw"; sync
t0=$(now); s3=$(pull "$base/images/big/$v_big/manifest.json" "$out/again.raw" --cache-dir "$work/cache"); t1=$(now)
echo "re-pull: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, bytes downloaded $(field "$s3" bytes_downloaded), reused $(field "$s3" bytes_reused) (first pull: ${pull_s%.*} s)"
rm -f "$out/again.raw"

echo "== 4. a version with 1% of its chunks changed"
cp --reflink=auto "$work/big.raw" "$work/changed.raw"
chunks=$((size_mib / 4)); changed=$(( (chunks + 99) / 100 ))
for i in $(seq 1 $changed); do
  dd if=/dev/urandom of="$work/changed.raw" bs=4096 count=1 seek=$(( (i * chunks / (changed + 1)) * 1024 )) conv=notrunc status=none
done
v_changed=$(publish "$work/changed.raw" big)
t0=$(now); s4=$(pull "$base/images/big/$v_changed/manifest.json" "$out/changed.raw" --cache-dir "$work/cache"); t1=$(now)
cmp "$out/changed.raw" "$work/changed.raw"
echo "new version: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, $(field "$s4" chunks_downloaded) of $chunks chunks downloaded ($(field "$s4" bytes_downloaded) bytes), $(field "$s4" chunks_reused) from the cache"
rm -f "$out/changed.raw" "$work/changed.raw"
