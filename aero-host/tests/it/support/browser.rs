//! A browser as a test client: a page server on its own origin that collects the page's
//! verdict, and headless Chromium opening that page.

use super::serve::require_tool;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Serves `page` at `/` (with `extra_headers`, each ending in CRLF) and sends the body of
/// `POST /verdict` on `tx`.
fn page_server(
    listener: TcpListener,
    page: String,
    extra_headers: String,
    tx: mpsc::Sender<String>,
) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => break None,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(p + 4);
            }
        };
        let Some(head_end) = head_end else { continue };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let first = head.lines().next().unwrap_or("");
        let reply = if first.starts_with("GET / ") {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            )
        } else if first.starts_with("POST /verdict") {
            let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
            let _ = tx.send(body);
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string()
        } else {
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
        };
        let _ = s.write_all(reply.as_bytes());
    }
}

/// Opens `page` (served with `extra_headers`) from `listener`'s origin in headless Chromium
/// and returns the verdict the page posts (JSON), within 90 s.
pub fn chromium_verdict(
    listener: TcpListener,
    page: String,
    extra_headers: String,
) -> serde_json::Value {
    chromium_verdict_with(listener, page, extra_headers, &[], Duration::from_secs(90))
}

/// [`chromium_verdict`] with extra Chromium flags and a time limit for the verdict.
pub fn chromium_verdict_with(
    listener: TcpListener,
    page: String,
    extra_headers: String,
    flags: &[&str],
    limit: Duration,
) -> serde_json::Value {
    let chromium = require_tool("chromium", "apt-get install -y chromium");
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || page_server(listener, page, extra_headers, tx));
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{origin}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let verdict = rx.recv_timeout(limit);
    let _ = browser.kill();
    let _ = browser.wait();
    let verdict = verdict.unwrap_or_else(|_| panic!("the page posted no verdict within {limit:?}"));
    serde_json::from_str(&verdict).unwrap_or_else(|e| panic!("verdict {verdict}: {e}"))
}
