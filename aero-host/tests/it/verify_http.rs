//! `aero-host verify --manifest-url` against a real HTTP server (`aero-host serve`): chunk URLs
//! resolve relative to the manifest URL with its query string, and every bad chunk is named.

use crate::support::serve::*;
use std::process::{Command, Output};

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aero-host"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verifies_a_served_image_over_http_and_names_bad_chunks() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.raw");
    make_raw(&src, 4 * 1024 * 1024 + 512);
    let version = publish(&storage, &src, "vm", 1024 * 1024, &[]);
    let srv = Server::start(&storage, &[], &[]);

    let url = srv.url(&format!(
        "/v1/images/vm/chunked/{version}/manifest.json?sig=abc#frag"
    ));
    let out = verify(&[
        "--manifest-url",
        &url,
        "--header",
        "X-Trace: verify",
        "--image-id",
        "vm",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Verified 5/5 chunks (4194816 bytes)"),
        "{}",
        text(&out)
    );
    drop(srv);

    // Damage two chunks in storage, then serve again (a fresh server, nothing cached).
    let chunks = root.path().join(format!("images/vm/{version}/chunks"));
    let mut bytes = std::fs::read(chunks.join("00000001.bin")).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(chunks.join("00000001.bin"), bytes).unwrap();
    std::fs::remove_file(chunks.join("00000003.bin")).unwrap();
    let srv = Server::start(&storage, &[], &[]);
    let url = srv.url(&format!("/v1/images/vm/chunked/{version}/manifest.json"));
    let out = verify(&["--manifest-url", &url, "--retries", "1"]);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("bad chunk 1") && report.contains("sha256 is"),
        "{report}"
    );
    assert!(
        report.contains("bad chunk 3") && report.contains("00000003.bin"),
        "{report}"
    );
    assert!(
        !report.contains("bad chunk 0") && !report.contains("bad chunk 2"),
        "{report}"
    );
}

#[test]
fn bad_urls_and_headers_are_refused() {
    let out = verify(&["--manifest-url", "not a url"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not a valid URL"), "{}", text(&out));
    let out = verify(&[
        "--manifest-url",
        "http://127.0.0.1:9/m.json",
        "--header",
        "no colon here",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Name: value"), "{}", text(&out));
    let out = verify(&["--manifest-file", "m.json", "--header", "A: b"]);
    assert!(!out.status.success());
}
