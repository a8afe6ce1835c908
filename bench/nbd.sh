#!/usr/bin/env bash
# Copying a 1 GiB image of random data with `qemu-img convert` over NBD from `aero-host nbd`
# (every chunk fetched, verified and served; the server restarted for each run) vs the same
# convert of the local file: from the published directory with no cache, from
# `aero-host serve`'s chunked endpoints over HTTP with no cache, and from a warm chunk cache;
# and `aero-host pull` of the same image from the same `aero-host serve`. Prints seconds,
# MB/s, the ratio to the local convert, and the ratio of the NBD copy over HTTP to the pull.
# Boot figures (a real guest over NBD): bench/boot.sh.
#
#   bench/nbd.sh [WORK_DIR]     # default: target/bench
#   AERO_BIN=PATH bench/nbd.sh … # an already built binary instead of a release build
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:-target/bench}")
mkdir -p "$work"
source bench/timing.sh
bin=$(aero_bin)

image=$work/random-1g.raw
[ -f "$image" ] || head -c 1G /dev/urandom > "$image"
store=$work/nbd-store
if ! [ -f "$store/images/bench/latest.json" ]; then
  rm -rf "$store"
  "$bin" --storage "fs:$store" publish --file "$image" --prefix images/bench/ \
    --compute-version manifest-sha256 --publish-latest >/dev/null
fi
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$store/images/bench/latest.json")
size=$(stat -c %s "$image")

# One run: start `aero-host nbd ARGS...` on a Unix socket, convert its export, stop it.
cat > "$work/nbd-convert.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
out=\$1; shift
sock=$work/bench-nbd.sock
log=$work/bench-nbd.log
"$bin" nbd "\$@" --unix "\$sock" 2> "\$log" & pid=\$!
trap 'kill \$pid 2>/dev/null || true' EXIT
for _ in \$(seq 200); do grep -qs exporting "\$log" && break; sleep 0.05; done
qemu-img convert -f raw -O raw "nbd+unix:///?socket=\$sock" "\$out"
kill -TERM \$pid; wait \$pid
SH
chmod +x "$work/nbd-convert.sh"

"$bin" --storage "fs:$store" serve --listen-addr 127.0.0.1:0 > "$work/serve.out" 2>/dev/null & serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do grep -qs listening "$work/serve.out" && break; sleep 0.05; done
base=$(sed -n 's/^listening on //p' "$work/serve.out")

cat "$image" > /dev/null   # warm the page cache for every run
out=$work/nbd-out.raw
check() { cmp -s "$out" "$image" || { echo "$1: the copy differs!" >&2; exit 1; }; }

local_s=$(seconds "$out" qemu-img convert -f raw -O raw "$image" "$out")
dir_s=$(seconds "$out" "$work/nbd-convert.sh" "$out" "$store/images/bench/$version" --cache-dir none)
check "directory"
http_s=$(seconds "$out" "$work/nbd-convert.sh" "$out" "$base/v1/images/bench/chunked/$version/manifest.json" --cache-dir none)
check "http"
rm -rf "$work/nbd-cache"
"$work/nbd-convert.sh" "$out" "$store/images/bench/$version" --cache-dir "$work/nbd-cache"   # fills the cache
warm_s=$(seconds "$out" "$work/nbd-convert.sh" "$out" "$store/images/bench/$version" --cache-dir "$work/nbd-cache")
check "warm cache"
pull_s=$(seconds "$out" "$bin" pull "$base/v1/images/bench/chunked/$version/manifest.json" -o "$out" --no-cache)
check "pull"
rm -f "$out"

python3 - "$size" "$local_s" "$dir_s" "$http_s" "$warm_s" "$pull_s" <<'PY'
import sys
size, local, *rest = sys.argv[1:]
size, local = int(size), float(local)
mb = lambda t: size / t / 1e6
print(f"1 GiB random, qemu-img convert of the local file (reference): {local:.3f}s ({mb(local):.0f} MB/s)")
names = ["over NBD, published directory, no cache", "over NBD, aero-host serve over HTTP, no cache",
         "over NBD, warm chunk cache", "aero-host pull from aero-host serve, no cache"]
for name, t in zip(names, rest):
    t = float(t)
    print(f"{name}: {t:.3f}s ({mb(t):.0f} MB/s)  time ratio to the local convert = {t / local:.2f}")
http, pull = float(rest[1]), float(rest[3])
print(f"qemu-img convert over NBD from aero-host serve vs aero-host pull from it: ratio = {http / pull:.2f}")
PY
