#!/usr/bin/env bash
# Real boots of a small Debian disk (bench/lib/make-boot-disk.sh) with qemu-system-x86_64
# (software emulation, direct kernel boot, serial console), each until the guest prints
# AERO-BOOT-OK after checking the sha256 of every file under /usr/bin and /usr/sbin:
#   1. the reference: the local file, three boots (their median sets the per-boot limit), and
#      three more at the end (the ratios use the median of all six);
#   2. lazily from `aero-host nbd` over nginx serving the published directory and over
#      `aero-host serve`'s chunked endpoints: RUNS boots in a row each with a cold chunk cache
#      (a new, empty one per boot), then WARM_RUNS with the warm cache; boots that reached the
#      marker, boot-to-marker time, bytes fetched;
#   3. the disk pulled with `aero-host pull` from `aero-host serve` and from nginx, each pulled
#      file booted once (pass/fail);
#   4. the reference: qemu's own HTTP driver (read-only) against the same nginx, HTTP_RUNS boots
#      with the per-boot limit, counting those that hung.
# Prints a table: boots that reached the marker, median (min-max) seconds, the ratio of the
# median to the local boot's, and the bytes fetched per boot.
#
#   bench/boot.sh [WORK_DIR] [RUNS]      # defaults: target/bench-boot, 10
#   AERO_BIN=PATH bench/boot.sh …         # an already built binary instead of a release build
#   BOOT_TIMEOUT=S                        # per-boot limit (default: 3x the local boot, >= 60 s)
#   WARM_RUNS=N, HTTP_RUNS=N              # warm-cache boots per nbd source, boots with qemu's
#                                         # HTTP driver (default: RUNS each)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/timing.sh
work=$(realpath -m "${1:-target/bench-boot}")
runs=${2:-10}
warm_runs=${WARM_RUNS:-$runs}
http_runs=${HTTP_RUNS:-$runs}
if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "bench/boot.sh needs qemu-system-x86_64, from the backports suite qemu-utils comes from:" >&2
  echo "  apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86" >&2
  exit 1
fi
for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/boot.sh needs $tool (apt-get install -y nginx curl python3)" >&2; exit 1; }
done
bin=$(aero_bin)
mkdir -p "$work"
disk=$PWD/target/boot-disk
bash bench/lib/make-boot-disk.sh "$disk"
results=$work/results.tsv
: > "$results"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# Publish the disk (4 MiB chunks; its unused blocks are zero chunks), and its raw bytes for
# qemu's HTTP driver.
store=$work/store
rm -rf "$store"
version=$("$bin" publish --storage "fs:$store" --file "$disk/disk.raw" --prefix images/boot/ \
  --compute-version sha256 --publish-latest --json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
mkdir -p "$store/raw"
ln -f "$disk/disk.raw" "$store/raw/disk.raw"

# nginx over the store, logging the bytes it sends; aero-host serve over the same store.
port=$(free_port)
ngx=$work/nginx
start_nginx "$ngx" "$store" "$port" "$ngx/access.log"
"$bin" --storage "fs:$store" serve --listen-addr 127.0.0.1:0 > "$work/serve.out" 2>"$work/serve.log" & serve_pid=$!
qemu_pid=""
nbd_pid=""
cleanup() {
  stop_nginx "$ngx"
  kill "$serve_pid" 2>/dev/null || true
  [ -z "$nbd_pid" ] || kill "$nbd_pid" 2>/dev/null || true
  [ -z "$qemu_pid" ] || kill -KILL "$qemu_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 200); do grep -qs listening "$work/serve.out" && break; sleep 0.05; done
serve=$(sed -n 's/^listening on //p' "$work/serve.out")
base=http://127.0.0.1:$port
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/raw/disk.raw" -r 0-0)" = 206 ] || { echo "nginx does not serve $store" >&2; exit 1; }
nginx_manifest=$base/images/boot/$version/manifest.json
serve_manifest=$serve/v1/images/boot/chunked/$version/manifest.json
nginx_bytes() { python3 -c 'import sys; print(sum(int(l) for l in open(sys.argv[1]) if l.strip()))' "$ngx/access.log"; }

# boot NAME DRIVE [BYTES_FETCHED_CMD] — one boot of DRIVE (a -drive value) until the marker or
# the time limit; appends NAME, ok (1/0), seconds to the marker, bytes to $results.
boot_timeout=${BOOT_TIMEOUT:-600}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
boot() {
  local name=$1 drive=$2 log=$work/console.log t0 t="" deadline
  : > "$log"
  t0=$(ms)
  qemu-system-x86_64 -machine pc,accel=tcg -m 512 -nodefaults -no-reboot -display none \
    -serial "file:$log" -kernel "$disk/vmlinuz" -initrd "$disk/initrd.img" \
    -append "$(cat "$disk/append")" -drive "$drive" >"$work/qemu.err" 2>&1 & qemu_pid=$!
  deadline=$((t0 + boot_timeout * 1000))
  # A hung qemu ignores SIGTERM, and one once hung after the guest powered off: success is
  # the marker line, and qemu gets SIGKILL 10 s after it or at the time limit.
  while kill -0 "$qemu_pid" 2>/dev/null && [ "$(ms)" -lt "$deadline" ]; do
    if [ -z "$t" ] && grep -qa '^AERO-BOOT-OK' "$log"; then
      t=$(ms); deadline=$((t + 10000 < deadline ? t + 10000 : deadline))
    fi
    grep -qa '^AERO-BOOT-FAIL' "$log" && break
    sleep 0.1
  done
  kill -KILL "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=""
  if [ -z "$t" ] && grep -qa '^AERO-BOOT-OK' "$log"; then t=$(ms); fi
  if [ -n "$t" ]; then
    printf '%s\t1\t%s\n' "$name" "$(( t - t0 ))e-3" >> "$results"
  else
    printf '%s\t0\t%s\n' "$name" "$boot_timeout" >> "$results"
    cp "$log" "$work/failed-$(echo "$name" | tr -c 'a-z0-9' -)-$(date +%s).log"
  fi
}
# Appends the bytes fetched to the last line of $results.
bytes() { sed -i "\$s/\$/\t$1/" "$results"; }

echo "== 1. the local file (reference)"
for i in 1 2 3; do boot local "file=$disk/disk.raw,format=raw,if=virtio,readonly=on"; bytes 0; done
if [ -z "${BOOT_TIMEOUT:-}" ]; then
  boot_timeout=$(python3 -c "
import statistics,sys
t=[float(l.split('\t')[2]) for l in open(sys.argv[1]) if l.startswith('local\t1')]
print(max(60, round(3*statistics.median(t))) if t else 600)" "$results")
fi
echo "per-boot time limit: ${boot_timeout} s"

echo "== 2. aero-host nbd"
# nbd_boot NAME SOURCE CACHE_DIR — one boot from a new `aero-host nbd SOURCE`.
nbd_boot() {
  local sock=$work/nbd.sock log=$work/nbd.log
  "$bin" nbd "$2" --unix "$sock" --cache-dir "$3" --json > "$work/nbd.json" 2> "$log" & nbd_pid=$!
  for _ in $(seq 400); do grep -qs exporting "$log" && break; sleep 0.05; done
  boot "$1" "file=nbd+unix:///?socket=$sock,format=raw,if=virtio,readonly=on"
  kill -TERM "$nbd_pid"; wait "$nbd_pid" || true
  nbd_pid=""
  bytes "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_fetched"])' "$work/nbd.json")"
}
for via in nginx serve; do
  manifest=$serve_manifest; [ $via = nginx ] && manifest=$nginx_manifest
  for i in $(seq "$runs"); do
    rm -rf "$work/cache"
    nbd_boot "nbd over $via, cold cache" "$manifest" "$work/cache"
    echo "nbd over $via, cold, boot $i: $(tail -1 "$results" | cut -f2-)"
  done
  for i in $(seq "$warm_runs"); do
    nbd_boot "nbd over $via, warm cache" "$manifest" "$work/cache"
    echo "nbd over $via, warm, boot $i: $(tail -1 "$results" | cut -f2-)"
  done
done

echo "== 3. pulled files"
for via in serve nginx; do
  manifest=$serve_manifest; [ $via = nginx ] && manifest=$nginx_manifest
  rm -f "$work/pulled-$via.raw"
  summary=$("$bin" pull "$manifest" -o "$work/pulled-$via.raw" --no-cache --json 2>/dev/null)
  cmp "$work/pulled-$via.raw" "$disk/disk.raw"
  boot "pulled from $via, local file" "file=$work/pulled-$via.raw,format=raw,if=virtio,readonly=on"
  bytes "$(field "$summary" bytes_downloaded)"
  rm -f "$work/pulled-$via.raw"
done

echo "== 4. qemu's HTTP driver against nginx (reference)"
for i in $(seq "$http_runs"); do
  before=$(nginx_bytes)
  boot "qemu HTTP driver over nginx" "file.driver=http,file.url=$base/raw/disk.raw,format=raw,if=virtio,readonly=on"
  bytes $(( $(nginx_bytes) - before ))
  echo "qemu HTTP driver, boot $i: $(tail -1 "$results" | cut -f2-)"
done

echo "== 5. the local file again (the machine's load drifts: the reference is every local boot)"
for i in 1 2 3; do boot local "file=$disk/disk.raw,format=raw,if=virtio,readonly=on"; bytes 0; done

python3 - "$results" "$boot_timeout" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
local = statistics.median(float(r[2]) for r in rows if r[0] == "local" and r[1] == "1")
print(f"\nboot to AERO-BOOT-OK (per-boot limit {sys.argv[2]} s)")
print(f"{'boot':34} {'reached':>8} {'median s':>9} {'min-max s':>13} {'ratio':>6} {'MiB fetched/boot':>17}")
for name in names:
    mine = [r for r in rows if r[0] == name]
    ok = [float(r[2]) for r in mine if r[1] == "1"]
    fetched = statistics.median(int(r[3]) for r in mine) / 2**20
    if ok:
        med = statistics.median(ok)
        span = f"{min(ok):.1f}-{max(ok):.1f}"
        print(f"{name:34} {len(ok):>4}/{len(mine):<3} {med:>9.1f} {span:>13} {med / local:>6.2f} {fetched:>17.1f}")
    else:
        print(f"{name:34} {0:>4}/{len(mine):<3} {'-':>9} {'-':>13} {'-':>6} {fetched:>17.1f}")
PY
