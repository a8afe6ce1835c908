#!/usr/bin/env bash
# Publishing to S3 (s3s-fs on 127.0.0.1, its own data directory), 4 MiB chunks, beside reference
# runs against the same server:
#   (a) a full publish of 1 GiB of random data vs `rclone copyto` of the same file
#       (target: publish <= 0.5x rclone's time, when rclone is installed);
#   (b) a re-publish of that image with 1% of its chunks changed (3 of 256), as a new version
#       with the first as its base (the default when latest.json exists), vs the full publish
#       (targets: bytes uploaded = the changed chunks, time <= 0.15x the full publish), with the
#       CPU time s3s-fs spent meanwhile (its server-side copies are full copies of the bytes).
# Each figure is the best of three runs, each into a fresh bucket.
#
#   bench/s3.sh [WORK_DIR]     # default: target/bench
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:-target/bench}")
for tool in s3s-fs python3; do
  command -v "$tool" >/dev/null || { echo "bench/s3.sh needs $tool (cargo install s3s-fs --features binary; apt-get install -y python3)" >&2; exit 1; }
done
mkdir -p "$work"
cargo build --release -q -p aero-host
bin=$PWD/target/release/aero-host
[ -f "$work/random-1g.raw" ] || head -c 1G /dev/urandom > "$work/random-1g.raw"
changed=$work/random-1g-changed.raw
if [ ! -f "$changed" ]; then
  cp "$work/random-1g.raw" "$changed.tmp"
  # One byte in chunks 10, 100 and 200 (1% of 256).
  for chunk in 10 100 200; do
    printf '\xee' | dd of="$changed.tmp" bs=1 seek=$((chunk * 4194304 + 7)) conv=notrunc status=none
  done
  mv "$changed.tmp" "$changed"
fi

key=aero-bench-key
secret=aero-bench-secret
s3root=$work/s3s
rm -rf "$s3root"
mkdir -p "$s3root"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$port" --access-key "$key" --secret-key "$secret" "$s3root" \
  >"$work/s3s.log" 2>&1 &
s3_pid=$!
trap 'kill $s3_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=us-east-1

# publish BUCKET IMAGE VERSION: one publish; prints its --json summary, or its errors on failure.
publish() {
  "$bin" publish --storage "s3://$1?endpoint=http://127.0.0.1:$port&region=us-east-1" \
    --file "$2" --prefix images/bench/ --image-version "$3" --publish-latest \
    --chunk-size 4194304 --json 2>"$work/s3-publish.log" || {
    echo "publish of $2 to bucket $1 failed:" >&2
    grep -v '^ ' "$work/s3-publish.log" | tail -5 >&2
    return 1
  }
}
# now: monotonic seconds.
now() { python3 -c 'import time; print(time.monotonic())'; }
# CPU seconds (user + system) s3s-fs has used so far: what the server's own work costs.
server_cpu() { python3 -c 'import os, sys; f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$s3_pid"; }

best_full="" best_inc="" inc_server_cpu="" summary=""
for run in 1 2 3; do
  # S3 bucket names are 3 to 63 characters long.
  bucket=bench-$run
  mkdir -p "$s3root/$bucket"
  sync
  t0=$(now); publish "$bucket" "$work/random-1g.raw" v1 >/dev/null; t1=$(now)
  # The full publish's writes are flushed outside both timed windows.
  sync
  c2=$(server_cpu); t2=$(now); summary=$(publish "$bucket" "$changed" v2); t3=$(now); c3=$(server_cpu)
  best_full=$(python3 -c "print(min($t1 - $t0, ${best_full:-1e9}))")
  inc_server_cpu=$(python3 -c "print($c3 - $c2 if $t3 - $t2 < ${best_inc:-1e9} else ${inc_server_cpu:-0})")
  best_inc=$(python3 -c "print(min($t3 - $t2, ${best_inc:-1e9}))")
  rm -rf "${s3root:?}/$bucket"
done
python3 - "$best_full" "$best_inc" "$summary" "$inc_server_cpu" <<'PY'
import json, sys
full, inc, s, server = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
print(f"full publish of 1 GiB to s3s-fs: {full:.3f}s")
print(f"re-publish with 1% changed, base {s['base_version']}: {inc:.3f}s; ratio {inc/full:.2f} (target <= 0.15); "
      f"uploaded {s['uploaded_chunks']} chunks ({s['bytes_uploaded']} bytes), copied {s['copied_chunks']} "
      f"({s['bytes_copied']} bytes), zero {s['zero_chunks']}")
print(f"  s3s-fs used {server:.2f} CPU-seconds during that re-publish (its CopyObject copies the "
      f"object's bytes on its own disk)")
PY

if command -v rclone >/dev/null; then
  export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
    RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$port RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$key \
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$secret RCLONE_CONFIG_BENCH_REGION=us-east-1
  mkdir -p "$s3root/rclone"
  best_rclone=""
  for run in 1 2 3; do
    sync
    # The server is plain http: a CA bundle named by AWS_CA_BUNDLE (set on some machines) only
    # makes rclone's S3 client fail to start.
    t0=$(now); env -u AWS_CA_BUNDLE rclone copyto "$work/random-1g.raw" bench:rclone/random-1g.raw; t1=$(now)
    best_rclone=$(python3 -c "print(min($t1 - $t0, ${best_rclone:-1e9}))")
    rm -f "$s3root/rclone/random-1g.raw"
  done
  python3 -c "import sys; f, r = float(sys.argv[1]), float(sys.argv[2]); print(f'rclone copyto of the same file: {r:.3f}s; publish/rclone {f/r:.2f} (target <= 0.5)')" "$best_full" "$best_rclone"
else
  echo "rclone not installed (apt-get install -y rclone): no rclone reference"
fi
