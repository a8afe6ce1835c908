//! Hostile input over raw sockets and curl: malformed and oversized Range headers, 1000+
//! ranges, overflowing numbers, traversal in ids/versions/chunk names, very long ids, slow
//! clients, the 429 cap, and graceful shutdown finishing in-flight responses.

use crate::support::serve::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends a raw HTTP/1.1 request and returns the status code and the whole response.
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn get_range(addr: &str, path: &str, range: &str) -> (u16, String) {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nRange: {range}\r\nConnection: close\r\n\r\n"),
    )
}

fn status(url: &str) -> u16 {
    curl(&["--path-as-is", url]).0
}

#[test]
fn hostile_requests_get_the_right_status_and_the_server_stays_up() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let src = root.path().join("src.raw");
    make_raw(&src, 1024 * 1024);
    let version = publish(&storage, &src, "img", 65536, &[]);
    let srv = Server::start(&storage, &[], &[]);
    let a = srv.addr.as_str();
    let p = "/v1/images/img";

    let cases: Vec<(String, u16)> = vec![
        ("bytes=0-0".into(), 206),
        ("bytes=".into(), 416),
        ("bytes=a-b".into(), 416),
        ("bytes=--5".into(), 416),
        ("bytes=5".into(), 416),
        ("bytes=1-2-3".into(), 416),
        ("bytes=0-1,,2-3".into(), 416),
        ("bytes=18446744073709551616-".into(), 416),
        ("bytes=0-18446744073709551616".into(), 416),
        (
            "bytes=18446744073709551615-18446744073709551615".into(),
            416,
        ),
        ("bytes=-18446744073709551615".into(), 206),
        (format!("bytes=0-{}", "9".repeat(65)), 416),
        (format!("bytes={}1-1", "0".repeat(40)), 206),
        ("bytes=0-1, 2-3".into(), 416),
        (format!("bytes={}", vec!["0-0"; 1000].join(",")), 416),
        (format!("bytes={}", vec!["0-0"; 1001].join(",")), 413),
        (format!("bytes={}", vec!["1-1"; 5000].join(",")), 413),
        (format!("bytes={}1-2", "0".repeat(9000)), 413),
        ("lines=0-1".into(), 200),
        ("bytes 0-1".into(), 416),
    ];
    for (range, want) in &cases {
        let (code, text) = get_range(a, p, range);
        assert_eq!(code, *want, "Range: {}…", &range[..range.len().min(60)]);
        if *want >= 400 {
            assert!(text.contains("{\"error\":{\"code\""), "{text}");
        }
    }
    // Non-ASCII Range bytes are treated as absent.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"GET /v1/images/img HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\xff\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out[..40])
    );

    // Traversal and bad identifiers.
    let long = "a".repeat(129);
    let very_long = "%41".repeat(200);
    let not_found = [
        "/v1/images/..".to_string(),
        "/v1/images/%2e%2e".into(),
        "/v1/images/%2E%2E/data".into(),
        "/v1/images/..%2F..%2Fetc%2Fpasswd".into(),
        "/v1/images/img%2F..%2F..".into(),
        "/v1/images/a%5Cb".into(),
        "/v1/images/a%00b".into(),
        "/v1/images/%ff".into(),
        "/v1/images/%zz".into(),
        format!("/v1/images/{long}"),
        format!("/v1/images/{very_long}"),
        "/v1/images/img/chunked/..%2Flatest.json".into(),
        "/v1/images/img/chunked/%2e%2e/manifest.json".into(),
        "/v1/images/img/chunked/..%5C..%5C/manifest.json".into(),
        format!("/v1/images/img/chunked/{very_long}/manifest.json"),
        "/v1/images/img/chunked/chunks/..%2F..%2Flatest.json".into(),
        "/v1/images/img/chunked/chunks/..%2Fsecret.bin".into(),
        "/v1/images/img/chunked/chunks/%2e%2e%2f00000000.bin".into(),
        "/v1/images/img/chunked/chunks/..%5C00000000.bin".into(),
        "/v1/images/img/chunked/chunks/00000000.bin%00".into(),
        format!("/v1/images/img/chunked/chunks/{}.bin", "1".repeat(33)),
        format!("/v1/images/img/chunked/chunks/{}.bin", "1".repeat(40)),
        format!("/v1/images/img/chunked/{version}/chunks/99999999999999999999999999999999.bin"),
    ];
    for path in &not_found {
        assert_eq!(status(&srv.url(path)), 404, "{path}");
    }
    assert_eq!(
        status(&srv.url(&format!("/v1/images/{very_long}/meta"))),
        400
    );
    assert_eq!(status(&srv.url("/v1/images/%2e%2e/meta")), 400);
    assert_eq!(status(&srv.url("/v1/images/a%5Cb/meta")), 400);
    let (code, _, body) = curl(&["--path-as-is", &srv.url(&format!("/v1/images/{long}/meta"))]);
    assert_eq!(code, 400);
    assert!(body.len() < 1024, "bounded error body");
    // Raw, un-normalised traversal in the request line.
    for line in [
        "GET /v1/images/../../etc/passwd HTTP/1.1",
        "GET /v1/images/img/chunked/../../../manifest.json HTTP/1.1",
        "GET /v1/images/img/chunked/chunks/..\\..\\x.bin HTTP/1.1",
    ] {
        let (code, _) = raw(
            a,
            &format!("{line}\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(code == 404 || code == 400, "{line}: {code}");
    }
    // Garbage that is not HTTP.
    let (code, _) = raw(a, "\x16\x03\x01garbage\r\n\r\n");
    assert!(code == 400 || code == 0);

    // Slow clients: half-sent requests do not stop others being served.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /v1/images/img HTTP/1.1\r\nHost: x\r\nRange: by")
                .unwrap();
            s
        })
        .collect();
    for _ in 0..5 {
        let (code, _) = get_range(a, p, "bytes=0-99");
        assert_eq!(code, 206);
        for s in &mut slow {
            let _ = s.write_all(b"t");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(slow);
    assert_eq!(status(&srv.url("/health")), 200);
    assert_eq!(status(&srv.url("/readyz")), 200);
}

#[test]
fn concurrency_cap_answers_429_and_shutdown_lets_responses_finish() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let src = root.path().join("big.raw");
    let data = make_raw(&src, 48 * 1024 * 1024);
    publish(&storage, &src, "big", 4 * 1024 * 1024, &[]);
    let mut srv = Server::start(&storage, &["--max-concurrent-bytes-requests", "1"], &[]);
    let a = srv.addr.clone();

    // A full GET that is not read holds the only permit.
    let mut held = TcpStream::connect(&a).unwrap();
    held.write_all(b"GET /v1/images/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    held.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (code, text) = get_range(&a, "/v1/images/big", "bytes=0-9");
    assert_eq!(code, 429, "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("cache-control: no-store, no-transform"));
    let (code, _) = raw(
        &a,
        "GET /v1/images/big/chunked/manifest.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 429);
    let (code, _) = raw(&a, "OPTIONS /v1/images/big HTTP/1.1\r\nHost: x\r\nOrigin: https://x\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 429);
    // Metadata routes are not capped.
    assert_eq!(status(&srv.url("/v1/images/big/meta")), 200);

    // SIGTERM while the response is in flight: it still completes.
    let exit = {
        let srv_ref = &mut srv;
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut rest = Vec::new();
            held.read_to_end(&mut rest).unwrap();
            rest
        });
        let exit = srv_ref.terminate();
        let rest = reader.join().unwrap();
        let split = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(rest.len() - split, data.len(), "in-flight body finished");
        assert!(rest[split..] == data[..]);
        exit
    };
    assert!(exit.success(), "{exit:?}");
}
