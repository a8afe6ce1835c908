#!/usr/bin/env bash
# aero-host serve vs nginx (sendfile, 2 workers) serving the same bytes, both on 127.0.0.1,
# measured with wrk (-t2 -c32):
#   1 MiB Range GETs of a raw image      (target >= 0.8x nginx req/s)
#   4 KiB Range GETs of a raw image      (target >= 0.5x)
#   4 MiB chunk GETs of a published image (target >= 0.8x nginx serving the same chunk files)
# (each the same range again and again), and random aligned ranges over a 1 GiB raw image
# (larger than the default 256 MiB piece cache), default read settings:
#   4 KiB random ranges  (target >= 0.5x)
#   1 MiB random ranges  (target >= 1.0x)
# and the 4 KiB random ranges again with --open-files 0 (every read opens the object, as before
# the open-file cache), for comparison.
# Prints req/s of each side and the ratios.
#
#   bench/serve.sh [WORK_DIR] [SECONDS]     # defaults: target/bench-serve, 6
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:-target/bench-serve}")
secs=${2:-6}
for tool in nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/serve.sh needs $tool (apt-get install -y nginx wrk curl python3)" >&2; exit 1; }
done
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p aero-host
bin=$(realpath "$target_dir/release/aero-host")
mkdir -p "$work"
store=$work/store
if [ ! -f "$work/disk.raw" ]; then
  head -c 256M /dev/urandom > "$work/disk.raw.tmp" && mv "$work/disk.raw.tmp" "$work/disk.raw"
fi
if [ ! -f "$store/images/bench/latest.json" ]; then
  rm -rf "$store"
  "$bin" publish --storage "fs:$store" --file "$work/disk.raw" --prefix images/bench/ \
    --compute-version sha256 --publish-latest --chunk-size 4194304 >/dev/null 2>&1
fi
mkdir -p "$store/raw"
[ -f "$store/raw/disk.raw" ] || cp "$work/disk.raw" "$store/raw/disk.raw"
[ -f "$store/raw/big.raw" ] || head -c 1G /dev/urandom > "$store/raw/big.raw"
echo '[{"id":"disk","file":"raw/disk.raw","name":"bench disk"},{"id":"big","file":"raw/big.raw","name":"1 GiB"}]' > "$store/manifest.json"
cat "$store/raw/big.raw" > /dev/null
# wrk script: GETs of random RANGE_SIZE-aligned ranges of a 1 GiB object.
cat > "$work/random.lua" <<'LUA'
math.randomseed(42)
local size = tonumber(os.getenv("RANGE_SIZE"))
local blocks = math.floor(1073741824 / size)
request = function()
  local start = math.random(0, blocks - 1) * size
  return wrk.format("GET", nil, {["Range"] = "bytes=" .. start .. "-" .. (start + size - 1)})
end
LUA
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$store/images/bench/latest.json")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ngx_port=$(free_port)
aero_port=$(free_port)
ngx_dir=$work/nginx
mkdir -p "$ngx_dir"
cat > "$ngx_dir/nginx.conf" <<CONF
worker_processes 2;
pid $ngx_dir/nginx.pid;
error_log $ngx_dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $ngx_dir; proxy_temp_path $ngx_dir; fastcgi_temp_path $ngx_dir;
  uwsgi_temp_path $ngx_dir; scgi_temp_path $ngx_dir;
  server { listen 127.0.0.1:$ngx_port; root $store; }
}
CONF
nginx -c "$ngx_dir/nginx.conf"
aero_pid=""
# start_aero [FLAGS...]: (re)starts aero-host serve on $aero_port.
start_aero() {
  [ -n "$aero_pid" ] && { kill "$aero_pid"; wait "$aero_pid" 2>/dev/null || true; }
  RUST_LOG=warn "$bin" --storage "fs:$store" serve --listen-addr "127.0.0.1:$aero_port" \
    --max-concurrent-bytes-requests 0 --max-range-bytes 8388608 "$@" > "$work/serve.log" 2>&1 &
  aero_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$aero_port/health" >/dev/null && break; sleep 0.1; done
}
cleanup() { [ -n "$aero_pid" ] && kill "$aero_pid" 2>/dev/null; nginx -c "$ngx_dir/nginx.conf" -s stop 2>/dev/null || true; }
trap cleanup EXIT
start_aero
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$ngx_port/manifest.json" && break; sleep 0.1; done

# req/s of one wrk run: URL [header]
rps() {
  local url=$1 header=${2:-}
  local args=(-t2 -c32 -d"${secs}s")
  [ -n "$header" ] && args+=(-H "$header")
  wrk "${args[@]}" "$url" | awk '/Requests\/sec/ {print $2}'
}
# req/s of random aligned ranges of SIZE bytes: URL SIZE
random_rps() {
  RANGE_SIZE=$2 wrk -t2 -c32 -d"${secs}s" -s "$work/random.lua" "$1" | awk '/Requests\/sec/ {print $2}'
}
# Sanity: both sides give the same bytes.
check() {
  local a b
  a=$(curl -sf ${2:+-H "$2"} "$1" | sha256sum | cut -d' ' -f1)
  b=$(curl -sf ${2:+-H "$2"} "$3" | sha256sum | cut -d' ' -f1)
  [ "$a" = "$b" ] || { echo "bytes differ between $1 and $3" >&2; exit 1; }
}

one_mib='Range: bytes=67108864-68157439'
four_kib='Range: bytes=104857600-104861695'
chunk=00000010.bin
aero_raw=http://127.0.0.1:$aero_port/v1/images/disk
ngx_raw=http://127.0.0.1:$ngx_port/raw/disk.raw
aero_chunk=http://127.0.0.1:$aero_port/v1/images/bench/chunked/chunks/$chunk
ngx_chunk=http://127.0.0.1:$ngx_port/images/bench/$version/chunks/$chunk
check "$aero_raw" "$one_mib" "$ngx_raw"
check "$aero_raw" "$four_kib" "$ngx_raw"
check "$aero_chunk" "" "$ngx_chunk"

printf '%-22s %12s %12s %8s %8s\n' case aero-host nginx ratio target
row() {
  local name=$1 target=$2 a=$3 n=$4
  python3 -c 'import sys; n,a,nx,t=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]); r=a/nx; verdict="ok" if r>=t else "BELOW"; print(f"{n:<22} {a:12.0f} {nx:12.0f} {r:8.2f} {t:8.2f} {verdict}")' "$name" "$a" "$n" "$target"
}
row "1 MiB range GET" 0.8 "$(rps "$aero_raw" "$one_mib")" "$(rps "$ngx_raw" "$one_mib")"
row "4 KiB range GET" 0.5 "$(rps "$aero_raw" "$four_kib")" "$(rps "$ngx_raw" "$four_kib")"
row "4 MiB chunk GET" 0.8 "$(rps "$aero_chunk")" "$(rps "$ngx_chunk")"
aero_big=http://127.0.0.1:$aero_port/v1/images/big
ngx_big=http://127.0.0.1:$ngx_port/raw/big.raw
check "$aero_big" 'Range: bytes=1048576-1052671' "$ngx_big"
row "4 KiB random ranges" 0.5 "$(random_rps "$aero_big" 4096)" "$(random_rps "$ngx_big" 4096)"
row "1 MiB random ranges" 1.0 "$(random_rps "$aero_big" 1048576)" "$(random_rps "$ngx_big" 1048576)"
start_aero --open-files 0
row "4 KiB random, no fds" 0.5 "$(random_rps "$aero_big" 4096)" "$(random_rps "$ngx_big" 4096)"
