//! What the `pull_*` tests share: nginx serving a published directory as a CDN would, and a
//! fault-injecting HTTP proxy in front of any server.

use super::serve::{free_port, require_tool};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// nginx serving `root` on 127.0.0.1 (its own config, pid and logs in a temporary directory).
pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
    pub base: String,
}

impl Nginx {
    /// Starts nginx over `root`; waits until it answers.
    pub fn start(root: &Path) -> Nginx {
        let nginx = require_tool("nginx", "apt-get install -y nginx");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "user root;\nworker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    root {};\n  }}\n}}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            _dir: dir,
            base,
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What the proxy does to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// One byte of the body flipped (the digest no longer matches).
    BadDigest,
    /// Content-Length announces the whole body, half is sent, the connection closes.
    Truncated,
    /// 200 with half the body and a Content-Length that agrees with it.
    ShortBody,
    /// 206 with a Content-Range of the first half, to a request for the whole object.
    WrongRange,
    /// 404.
    NotFound,
    /// 500.
    ServerError,
    /// The answer is held back this many milliseconds.
    Delay(u64),
}

/// A fault applied to requests whose path ends with `suffix`, `times` times (then passed).
struct Rule {
    suffix: String,
    fault: Fault,
    times: usize,
}

/// A fault-injecting HTTP proxy on 127.0.0.1 in front of `upstream` (`host:port`).
pub struct FaultProxy {
    pub base: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl FaultProxy {
    /// Starts the proxy; it runs until the test process ends.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let upstream = upstream.trim_start_matches("http://").to_string();
        let (r, h) = (Arc::clone(&rules), Arc::clone(&hits));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, h, upstream) = (Arc::clone(&r), Arc::clone(&h), upstream.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &upstream, &r, &h);
                });
            }
        });
        FaultProxy { base, rules, hits }
    }

    /// Applies `fault` to the next `times` requests whose path ends with `suffix`.
    pub fn fault(&self, suffix: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            suffix: suffix.to_string(),
            fault,
            times,
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Requests seen for paths ending with `suffix` (any query).
    pub fn hits(&self, suffix: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.split('?').next().unwrap_or("").ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request target seen (path and query).
    pub fn targets(&self) -> Vec<String> {
        self.hits.lock().unwrap().keys().cloned().collect()
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn handle(
    conn: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<Rule>>,
    hits: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    *hits.lock().unwrap().entry(target.clone()).or_default() += 1;
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.times > 0 && path.ends_with(&r.suffix))
            .map(|r| {
                r.times -= 1;
                r.fault
            })
    };
    let (status, mut body) = fetch(upstream, &target)?;
    let mut conn = conn;
    let mut send = |status: &str, headers: &str, body: &[u8]| -> std::io::Result<()> {
        conn.write_all(
            format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
        )?;
        conn.write_all(body)?;
        conn.flush()
    };
    let half = body.len() / 2;
    match fault {
        None => send(
            &status,
            &format!("Content-Length: {}\r\n", body.len()),
            &body,
        ),
        Some(Fault::Delay(ms)) => {
            std::thread::sleep(Duration::from_millis(ms));
            send(
                &status,
                &format!("Content-Length: {}\r\n", body.len()),
                &body,
            )
        }
        Some(Fault::BadDigest) => {
            if let Some(b) = body.get_mut(half) {
                *b ^= 0x55;
            }
            send(
                &status,
                &format!("Content-Length: {}\r\n", body.len()),
                &body,
            )
        }
        Some(Fault::Truncated) => send(
            &status,
            &format!("Content-Length: {}\r\n", body.len()),
            &body[..half],
        ),
        Some(Fault::ShortBody) => send(
            &status,
            &format!("Content-Length: {half}\r\n"),
            &body[..half],
        ),
        Some(Fault::WrongRange) => send(
            "206 Partial Content",
            &format!(
                "Content-Length: {half}\r\nContent-Range: bytes 0-{}/{}\r\n",
                half.saturating_sub(1),
                body.len()
            ),
            &body[..half],
        ),
        Some(Fault::NotFound) => send("404 Not Found", "Content-Length: 0\r\n", b""),
        Some(Fault::ServerError) => send("500 Internal Server Error", "Content-Length: 0\r\n", b""),
    }
}

/// GETs `target` from `upstream` over HTTP/1.0: the status line's rest and the body.
fn fetch(upstream: &str, target: &str) -> std::io::Result<(String, Vec<u8>)> {
    let mut stream = TcpStream::connect(upstream)?;
    stream.write_all(format!("GET {target} HTTP/1.0\r\nHost: {upstream}\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .map(|(_, s)| s.trim().to_string())
        .unwrap_or_else(|| "502 Bad Gateway".into());
    Ok((status, raw[split..].to_vec()))
}
