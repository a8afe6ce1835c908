#!/usr/bin/env bash
# Soak of aero-host serve: MINUTES of mixed traffic against a published image — ranges of every
# size, chunks, manifests, 404s and bad ranges from well-behaved clients, alongside clients that
# stall (ask for 8 MiB and never read) and clients that connect and send nothing. Samples the
# server's RSS and open file descriptors every 10 s, prints them, and the well-behaved clients'
# error count (unexpected status or wrong length) and latency percentiles. Exits 1 on any such
# error. RSS includes the piece cache (default 256 MiB), which random ranges fill within the
# first seconds.
#
#   bench/soak.sh [MINUTES]        # default 10; AERO_HOST=path/to/aero-host skips the release build
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench/soak.sh needs $tool (apt-get install -y python3 curl)" >&2; exit 1; }
done
if [ -z "${AERO_HOST:-}" ]; then
  cargo build --release -q -p aero-host
  AERO_HOST=${CARGO_TARGET_DIR:-target}/release/aero-host
fi
bin=$(realpath "$AERO_HOST")
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

size=$((64 * 1024 * 1024))
chunk=$((1024 * 1024))
head -c "$size" /dev/urandom > "$work/disk.raw"
"$bin" --storage "fs:$work/store" publish --file "$work/disk.raw" --prefix images/soak/ \
  --compute-version sha256 --publish-latest --chunk-size "$chunk" >/dev/null 2>&1

# Short timeouts so stalled and silent clients are shed many times during the run.
"$bin" --storage "fs:$work/store" serve --listen-addr 127.0.0.1:0 \
  --send-timeout-secs 5 --idle-timeout-secs 5 >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$base" ] || { echo "serve did not start:" >&2; cat "$work/err" >&2; exit 1; }
echo "soak: $minutes min against $base (pid $server), image 64 MiB in 1 MiB chunks"

sample() {
  local rss fds
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
  fds=$(ls "/proc/$server/fd" | wc -l)
  printf '%6s  rss %6d KiB  fds %4d\n' "$1" "$rss" "$fds"
}

python3 - "$base" "$((minutes * 60))" "$size" "$chunk" > "$work/traffic" <<'PY' &
import http.client, random, socket, sys, threading, time
base, secs, size, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host, port = base.removeprefix("http://").split(":")
port = int(port)
end = time.time() + secs
errors, done, lock = [], [0], threading.Lock()
latencies, busy = [], [0]  # seconds per well-behaved request; 429 answers

def check(path, headers, want_status, want_len=None):
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        started = time.monotonic()
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        took = time.monotonic() - started
        ok = r.status in want_status and (want_len is None or len(body) == want_len)
        if r.status == 429:  # the concurrency cap answering is expected under load
            ok = True
        with lock:
            done[0] += 1
            latencies.append(took)
            busy[0] += r.status == 429
            if not ok:
                errors.append(f"{path} {headers}: {r.status}, {len(body)} bytes")
    except Exception as e:
        with lock:
            errors.append(f"{path} {headers}: {e!r}")
    finally:
        c.close()

def well_behaved(seed):
    rng = random.Random(seed)
    sizes = [1, 512, 4096, 65536, 1 << 20, 2359296, 8 << 20]
    while time.time() < end:
        kind = rng.random()
        if kind < 0.5:
            n = rng.choice(sizes)
            a = rng.randrange(0, size - n + 1)
            check("/v1/images/soak", {"Range": f"bytes={a}-{a + n - 1}"}, {206}, n)
        elif kind < 0.7:
            i = rng.randrange(size // chunk)
            check(f"/v1/images/soak/chunked/chunks/{i:08}.bin", {}, {200}, chunk)
        elif kind < 0.8:
            check("/v1/images/soak/chunked/manifest.json", {}, {200})
        elif kind < 0.9:
            check(f"/v1/images/nope{rng.randrange(100)}", {}, {404})
        else:
            bad = rng.choice([f"bytes={size}-", "bytes=a-b", "bytes=5-1", f"bytes=0-{9 << 20}"])
            check("/v1/images/soak", {"Range": bad}, {413, 416})

def stalled():
    while time.time() < end:
        try:
            s = socket.create_connection((host, port))
            a = random.randrange(0, size - (8 << 20))
            s.sendall(f"GET /v1/images/soak HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{a + (8 << 20) - 1}\r\n\r\n".encode())
            time.sleep(min(8, max(0, end - time.time())))
            s.close()
        except OSError:
            time.sleep(0.5)

def silent():
    while time.time() < end:
        try:
            socks = [socket.create_connection((host, port)) for _ in range(20)]
            time.sleep(min(8, max(0, end - time.time())))
            for s in socks:
                s.close()
        except OSError:
            time.sleep(0.5)

threads = [threading.Thread(target=well_behaved, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=stalled) for _ in range(16)]
threads += [threading.Thread(target=silent) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
lat = sorted(latencies) or [0]
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
print(f"latency of well-behaved requests (ms): p50 {pick(0.5):.1f}, p90 {pick(0.9):.1f}, "
      f"p99 {pick(0.99):.1f}, max {lat[-1] * 1000:.1f}; 429 answers: {busy[0]}")
print(f"well-behaved requests: {done[0]}, errors: {len(errors)}")
for e in errors[:20]:
    print("  error:", e)
PY
traffic=$!

t=0
sample "${t}s"
while kill -0 "$traffic" 2>/dev/null; do
  sleep 10
  t=$((t + 10))
  kill -0 "$traffic" 2>/dev/null && sample "${t}s"
done
wait "$traffic"
sleep 6  # let the timeouts shed what the stalled and silent clients left
sample "after"
cat "$work/traffic"
grep -q 'errors: 0$' "$work/traffic"
