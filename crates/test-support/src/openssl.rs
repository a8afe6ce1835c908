//! CloudFront signatures checked independently of the code that made them: keys made by the
//! `openssl` CLI, CloudFront's base64 decoded here, and `openssl dgst -verify` against the
//! public key.

use crate::require_tool;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `openssl` CLI (a missing one fails the test with how to install it).
pub fn openssl() -> PathBuf {
    require_tool("openssl", None, "apt-get install -y openssl")
}

fn run(args: &[&str]) {
    let out = Command::new(openssl()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private key made by openssl in `dir` (`kind` = `rsa` for RSA 2048, else ECDSA P-256),
/// and its public key: (private PEM path, public PEM path).
pub fn keypair(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{kind}.key"));
    let public = dir.join(format!("{kind}.pub"));
    let k = key.to_str().unwrap();
    match kind {
        "rsa" => run(&["genrsa", "-out", k, "2048"]),
        _ => run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]),
    };
    run(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (key, public)
}

/// The query parameters of the signed URL `url` (CloudFront's values need no decoding).
pub fn query(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Decodes CloudFront's URL-safe base64 (`-` `_` `~` for `+` `=` `/`).
pub fn cf_decode(text: &str) -> Vec<u8> {
    let std: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    STANDARD.decode(std).unwrap()
}

/// Whether openssl verifies `signature` over `policy` with the `public` key and `digest`
/// (`sha1` or `sha256`); `dir` holds the scratch files.
pub fn openssl_verifies(
    dir: &Path,
    public: &Path,
    digest: &str,
    policy: &[u8],
    signature: &[u8],
) -> bool {
    let (p, s) = (dir.join("policy"), dir.join("sig"));
    std::fs::write(&p, policy).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new(openssl())
        .args(["dgst", &format!("-{digest}"), "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(&s)
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Verified OK")
}
