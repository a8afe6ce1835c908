# Shared by the benchmark scripts (sourced from the repository root).

# Best wall-clock seconds of three runs of `CMD...` (which must succeed). Before each run,
# untimed: OUTPUT is removed and dirty pages are flushed, so no run pays for another's writes.
#   seconds OUTPUT CMD...
seconds() {
  python3 -c 'import os, shutil, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
def once():
    shutil.rmtree(out, ignore_errors=True) if os.path.isdir(out) else (os.path.exists(out) and os.remove(out))
    os.sync()
    t = time.monotonic(); subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - t
print(min(once() for _ in range(3)))' "$@"
}

# The 8 GiB qcow2 holding 256 MiB of data (32 runs of 8 MiB spread over the disk), made once.
#   sparse_qcow2 PATH
sparse_qcow2() {
  [ -f "$1" ] && return
  qemu-img create -q -f qcow2 "$1.tmp" 8G
  local args=() i
  for i in $(seq 0 31); do args+=(-c "write -P $((i + 1)) $((i * 256))M 8M"); done
  qemu-io -f qcow2 "${args[@]}" "$1.tmp" >/dev/null
  mv "$1.tmp" "$1"
}
