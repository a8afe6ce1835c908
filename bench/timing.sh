# Shared by the benchmark scripts (sourced from the repository root).

# The aero-host binary to measure: $AERO_BIN when set, else a fresh release build.
#   bin=$(aero_bin)
aero_bin() {
  if [ -n "${AERO_BIN:-}" ]; then
    realpath "$AERO_BIN"
  else
    cargo build --release -q -p aero-host
    realpath "${CARGO_TARGET_DIR:-target}/release/aero-host"
  fi
}

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

# fsyncs the file named by its argument: `python3 -c "$fsync_file" FILE`. A reference that writes
# a file is timed with it too, to judge a durable write against the machine's own limit.
fsync_file='import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.close(fd)'

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

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts nginx (2 workers, sendfile), as a CDN would serve ROOT, on 127.0.0.1:PORT, with its
# pid, logs and temporary files under DIR. With BYTES_LOG, the bytes sent for each response are
# logged there, one number per line (the file is emptied first). `stop_nginx DIR` stops it.
#   start_nginx DIR ROOT PORT [BYTES_LOG]
start_nginx() {
  local dir=$1 root=$2 port=$3 log="access_log off;"
  mkdir -p "$dir"
  if [ -n "${4:-}" ]; then
    log="log_format bytes '\$bytes_sent'; access_log $4 bytes;"
    : > "$4"
  fi
  cat > "$dir/nginx.conf" <<CONF
user root;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  $log
  sendfile on;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server { listen 127.0.0.1:$port; root $root; }
}
CONF
  nginx -c "$dir/nginx.conf"
}

#   stop_nginx DIR
stop_nginx() { kill -QUIT "$(cat "$1/nginx.pid")" 2>/dev/null || true; }
