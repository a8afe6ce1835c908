#!/usr/bin/env bash
# The upload gateway against s3s-fs, beside a reference run:
#   ours: upload 1 GiB in 64 MiB parts through presigned URLs (4 parallel PUTs), then the time
#         from `complete` to `ready` (server-side conversion: ranged reads, publish, verify);
#   reference: `aws s3 cp` of the same file, then `aero-host publish` of the local file to the
#         same bucket;
#   peak memory (VmHWM) of the gateway after converting 256 MiB and after converting 1 GiB
#         (separate processes): it must not grow with the image.
#
#   bench/gateway.sh [WORK_DIR]     # default: target/bench
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/bench}
mkdir -p "$work"
cargo build --release -q -p aero-host
bin=$PWD/target/release/aero-host
s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
[ -x "$s3s" ] || { echo "s3s-fs is not installed: cargo install s3s-fs@0.14.1 --features binary --locked" >&2; exit 1; }
command -v aws >/dev/null || { echo "aws is not installed: apt-get install awscli" >&2; exit 1; }

[ -f "$work/random-1g.raw" ] || head -c 1G /dev/urandom > "$work/random-1g.raw"
[ -f "$work/random-256m.raw" ] || head -c 256M "$work/random-1g.raw" > "$work/random-256m.raw"

s3root=$work/gw-s3; rm -rf "$s3root"; mkdir -p "$s3root/disks"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$s3s" --host 127.0.0.1 --port "$port" --access-key key --secret-key secret "$s3root" >/dev/null 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null; [ -n "${gwpid:-}" ] && kill $gwpid 2>/dev/null; true' EXIT
export S3_BUCKET=disks AWS_REGION=us-east-1 S3_ENDPOINT=http://127.0.0.1:$port S3_FORCE_PATH_STYLE=true \
  AWS_ACCESS_KEY_ID=key AWS_SECRET_ACCESS_KEY=secret MULTIPART_PART_SIZE_BYTES=67108864
sleep 1

# Starts a gateway on a fresh SQLite file; sets gwpid and gw.
start_gateway() {
  rm -f "$work/gw.sqlite"*
  "$bin" gateway --listen-addr 127.0.0.1:0 --database "sqlite:$work/gw.sqlite" > "$work/gw.out" 2>"$work/gw.err" &
  gwpid=$!
  for _ in $(seq 100); do grep -q listening "$work/gw.out" 2>/dev/null && break; sleep 0.1; done
  gw=$(sed -n 's/^listening on //p' "$work/gw.out")
}

# Uploads FILE through the gateway; prints "<upload seconds> <complete-to-ready seconds>".
upload() {
  python3 - "$gw" "$1" <<'PY'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
gw, path = sys.argv[1], sys.argv[2]
H = {"X-User-Id": "bench", "Content-Type": "application/json"}
def call(method, p, body=None):
    req = urllib.request.Request(gw + p, method=method, headers=H,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as r:
        return json.load(r)
t0 = time.time()
made = call("POST", "/v1/images")
img, up, size = made["imageId"], made["uploadId"], made["partSize"]
total = __import__("os").path.getsize(path)
def put(n):
    url = call("POST", f"/v1/images/{img}/upload-url", {"uploadId": up, "partNumber": n})["url"]
    with open(path, "rb") as f:
        f.seek((n - 1) * size)
        data = f.read(size)
    req = urllib.request.Request(url, method="PUT", data=data)
    with urllib.request.urlopen(req) as r:
        return {"partNumber": n, "etag": r.headers["ETag"]}
with ThreadPoolExecutor(4) as pool:
    parts = list(pool.map(put, range(1, (total + size - 1) // size + 1)))
t1 = time.time()
call("POST", f"/v1/images/{img}/complete", {"uploadId": up, "parts": parts})
while True:
    rec = call("GET", f"/v1/images/{img}")
    if rec["state"] != "processing":
        break
    time.sleep(0.05)
t2 = time.time()
assert rec["state"] == "ready", rec
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
PY
}

peak_kib() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$1/status; }

start_gateway
read -r _ small_convert < <(upload "$work/random-256m.raw")
small_rss=$(peak_kib $gwpid); kill $gwpid; wait $gwpid 2>/dev/null || true

start_gateway
read -r up convert < <(upload "$work/random-1g.raw")
big_rss=$(peak_kib $gwpid); kill $gwpid; wait $gwpid 2>/dev/null || true
gwpid=""

source bench/timing.sh
export AWS_ENDPOINT_URL=$S3_ENDPOINT
ref_cp=$(seconds "$work/no-output" env -u AWS_CA_BUNDLE aws s3 cp --quiet "$work/random-1g.raw" s3://disks/ref/disk.img)
# A new version each run: a re-run of the same version would skip the chunks already stored.
ref_pub=$(seconds "$work/no-output" sh -c "\"$bin\" publish --storage 's3://disks?endpoint=$S3_ENDPOINT&region=us-east-1&force_path_style=true' \
  --file '$work/random-1g.raw' --prefix images/ --image-id ref --image-version v\$(date +%s%N) --publish-latest --json")

python3 - "$up" "$convert" "$ref_cp" "$ref_pub" "$small_convert" "$small_rss" "$big_rss" <<'PY'
import sys
up, conv, cp, pub, small_conv, small_rss, big_rss = map(float, sys.argv[1:])
print(f"1 GiB through the gateway: upload {up:.2f}s (64 MiB parts, 4 parallel PUTs), complete->ready {conv:.2f}s; "
      f"total {up + conv:.2f}s")
print(f"reference: aws s3 cp {cp:.2f}s + aero-host publish {pub:.2f}s = {cp + pub:.2f}s")
print(f"ratio (gateway total / reference total) {(up + conv) / (cp + pub):.2f}; "
      f"conversion alone / local publish {conv / pub:.2f}")
print(f"gateway peak RSS: {small_rss/1024:.1f} MiB after 256 MiB (converted in {small_conv:.2f}s), "
      f"{big_rss/1024:.1f} MiB after 1 GiB: ratio {big_rss/small_rss:.2f} (must stay ~1: memory does not grow with the image)")
PY
