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
