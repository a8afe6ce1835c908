//! The server's limits against hostile clients, over real sockets: clients that stop reading
//! are dropped after the send timeout (freeing their slots), silent connections after the idle
//! timeout, the connection caps hold in total and per address, and JSON logs carry request ids.

use crate::support::serve::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A storage with `disk.img` (`size` bytes) served as image `disk` through the catalog.
fn raw_disk(root: &Path, size: usize) -> (String, Vec<u8>) {
    let data = make_raw(&root.join("disk.img"), size);
    std::fs::write(
        root.join("manifest.json"),
        r#"[{"id":"disk","file":"disk.img","name":"Disk"}]"#,
    )
    .unwrap();
    (format!("fs:{}", root.display()), data)
}

/// A TCP connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Sends `GET path` (with `extra` header lines) on `s` and reads the response to the end:
/// `None` when the server closed the connection without answering.
fn get_on(mut s: TcpStream, path: &str, extra: &str) -> Option<(u16, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out[split + 4..].to_vec()))
}

/// The resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn stalled_readers_are_dropped_after_the_send_timeout() {
    const MIB: usize = 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let (storage, data) = raw_disk(root.path(), 200 * MIB);
    // Without the piece cache, whose bounded memory would otherwise hide what requests hold.
    let mut srv = Server::start(
        &storage,
        &[
            "--send-timeout-secs",
            "2",
            "--max-concurrent-bytes-requests",
            "8",
            "--cache-bytes",
            "0",
            "--max-range-bytes",
            "25165824",
        ],
        &[],
    );
    let pid = srv.child.id();
    let (status, _) = get_on(connect_from([127, 0, 0, 1], &srv.addr), "/healthz", "").unwrap();
    assert_eq!(status, 200);
    let before = rss(pid);

    // Eight clients ask for distinct 24 MiB ranges (192 MiB in all, were they buffered) and
    // never read; what the server holds for them must stay far below that.
    let started = Instant::now();
    let stalled: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = connect_from([127, 0, 0, 1], &srv.addr);
            let (a, b) = (i * 24 * MIB, (i + 1) * 24 * MIB - 1);
            let req =
                format!("GET /v1/images/disk HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{b}\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // A well-behaved client: 429 while the slots are held, then its full range.
    let wanted = 192 * MIB..200 * MIB;
    let range = format!("Range: bytes={}-{}\r\n", wanted.start, wanted.end - 1);
    let mut first = None;
    let mut peak = rss(pid);
    let served = loop {
        let (status, body) = get_on(
            connect_from([127, 0, 0, 1], &srv.addr),
            "/v1/images/disk",
            &range,
        )
        .expect("an answer");
        first.get_or_insert(status);
        peak = peak.max(rss(pid));
        if status == 206 {
            break body;
        }
        assert_eq!(status, 429);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still 429 after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let waited = started.elapsed();
    assert_eq!(
        first,
        Some(429),
        "the stalled clients did not hold the slots"
    );
    assert!(served == data[wanted], "the range came back wrong");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "served after {waited:?} with a 2 s send timeout"
    );
    let grown = peak.saturating_sub(before);
    eprintln!("RSS {before} before, peak {peak} while stalled (+{grown})");
    assert!(
        grown < 48 * MIB as u64,
        "RSS grew by {grown} bytes under 8 stalled 24 MiB ranges"
    );
    drop(stalled);
    assert!(srv.child.try_wait().unwrap().is_none());
    srv.terminate();
}

#[test]
fn silent_and_idle_connections_are_closed_but_slow_downloads_are_not() {
    let root = tempfile::tempdir().unwrap();
    let (storage, data) = raw_disk(root.path(), 4 * 1024 * 1024);
    let srv = Server::start(&storage, &["--idle-timeout-secs", "1"], &[]);

    // Sends nothing at all.
    let mut silent = connect_from([127, 0, 0, 1], &srv.addr);
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let n = silent.read(&mut [0u8; 64]).unwrap_or(0);
    assert_eq!(n, 0, "a silent connection got bytes");
    assert!(
        t.elapsed() >= Duration::from_millis(800) && t.elapsed() < Duration::from_secs(5),
        "a silent connection was closed after {:?}",
        t.elapsed()
    );

    // One request on a kept-alive connection, then silence.
    let mut kept = connect_from([127, 0, 0, 1], &srv.addr);
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    loop {
        let n = kept.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(800) && t.elapsed() < Duration::from_secs(5),
        "an idle kept-alive connection was closed after {:?}",
        t.elapsed()
    );

    // A download read slowly for longer than the idle timeout, sending nothing meanwhile.
    let mut slow = connect_from([127, 0, 0, 1], &srv.addr);
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /v1/images/disk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let t = Instant::now();
    loop {
        let n = slow.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if t.elapsed() < Duration::from_millis(2500) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let body = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(t.elapsed() > Duration::from_secs(2));
    assert!(
        got[body..] == data[..],
        "the slow download was cut short: {} of {} bytes",
        got.len() - body,
        data.len()
    );
}

#[test]
fn connection_caps_hold_in_total_and_per_address() {
    let root = tempfile::tempdir().unwrap();
    let (storage, _) = raw_disk(root.path(), 64 * 1024);
    let srv = Server::start(
        &storage,
        &["--max-connections", "5", "--max-connections-per-ip", "3"],
        &[],
    );
    let a = &srv.addr;
    let healthz = |from: [u8; 4]| get_on(connect_from(from, a), "/healthz", "").map(|r| r.0);
    // The server counts a connection once it has accepted it, which a loaded machine can
    // delay: each cap must refuse within a few seconds, not at a fixed instant.
    let refused_soon = |from: [u8; 4], what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while healthz(from).is_some() {
            assert!(
                Instant::now() < deadline,
                "{what} never refused a connection"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let held: Vec<TcpStream> = (0..3).map(|_| connect_from([127, 0, 0, 1], a)).collect();
    refused_soon([127, 0, 0, 1], "the per-address cap");
    assert_eq!(healthz([127, 0, 0, 2]), Some(200));
    let more: Vec<TcpStream> = (0..2).map(|_| connect_from([127, 0, 0, 2], a)).collect();
    refused_soon([127, 0, 0, 3], "the total cap");
    drop(held);
    drop(more);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match healthz([127, 0, 0, 3]) {
            Some(status) => break assert_eq!(status, 200),
            None => assert!(Instant::now() < deadline, "no slot came back"),
        }
    }
    assert_eq!(healthz([127, 0, 0, 1]), Some(200));
}

#[test]
fn json_logs_carry_the_request_id() {
    let root = tempfile::tempdir().unwrap();
    let (storage, _) = raw_disk(root.path(), 64 * 1024);
    let log = root.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args([
            "--storage",
            &storage,
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info,opendal=error")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let mut srv = Server {
        child,
        addr: base.trim_start_matches("http://").to_string(),
        base,
    };
    let (status, _) = get_on(
        connect_from([127, 0, 0, 1], &srv.addr),
        "/v1/images/disk",
        "X-Request-Id: limits-json-42\r\nRange: bytes=0-9\r\n",
    )
    .unwrap();
    assert_eq!(status, 206);
    srv.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let request = lines
        .iter()
        .find(|v| v["fields"]["request_id"] == "limits-json-42")
        .unwrap_or_else(|| panic!("no JSON line with the request id in:\n{text}"));
    assert_eq!(request["fields"]["status"], 206);
    assert_eq!(request["level"], "INFO");
}
