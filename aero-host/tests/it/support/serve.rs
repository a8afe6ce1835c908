//! What the `serve_*` tests share: publishing fixtures, starting `aero-host serve` on an
//! ephemeral port, s3s-fs through `aero-test-support`'s launcher, curl as a client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aero-host");

/// The path of a tool, or a panic that says how to install it (`aero-test-support`'s policy).
#[track_caller]
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    aero_test_support::require_tool(
        name,
        None,
        &format!("this test needs it; install it with: {install}"),
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A deterministic raw disk of `size` bytes (a multiple of 512) with varied content.
pub fn make_raw(path: &Path, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for (i, chunk) in data.chunks_mut(4096).enumerate() {
        if i % 5 == 3 {
            continue; // leave some zero blocks
        }
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(path, &data).unwrap();
    data
}

/// Publishes `file` as image `id` with `--publish-latest`; returns the version.
pub fn publish(
    storage: &str,
    file: &Path,
    id: &str,
    chunk_size: u64,
    envs: &[(&str, &str)],
) -> String {
    let out = Command::new(BIN)
        .args(["--storage", storage, "publish", "--file"])
        .arg(file)
        .args([
            "--prefix",
            &format!("images/{id}/"),
            "--compute-version",
            "sha256",
            "--publish-latest",
            "--chunk-size",
            &chunk_size.to_string(),
            "--json",
        ])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["version"].as_str().unwrap().to_string()
}

/// A running `aero-host serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: String,
}

impl Server {
    /// Starts serve over the gateway's bucket on `s3` (path-style addressing, as the gateway
    /// writes it) with `args`.
    pub fn on_gateway_bucket(s3: &S3, args: &[&str]) -> Server {
        let storage = format!(
            "{}&force_path_style=true",
            s3.uri(aero_test_support::BUCKET)
        );
        let mut envs = S3::env().to_vec();
        envs.push(("AWS_REGION", "us-east-1"));
        Server::start(&storage, args, &envs)
    }

    /// Starts `aero-host --storage STORAGE serve --listen-addr 127.0.0.1:0 ARGS...`.
    pub fn start(storage: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "--storage",
                storage,
                "serve",
                "--listen-addr",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "warn,opendal=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        let addr = base.trim_start_matches("http://").to_string();
        Server { child, base, addr }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running s3s-fs (`aero-test-support`'s launcher) with bucket `bucket`.
pub struct S3 {
    _server: aero_test_support::S3Server,
    pub endpoint: String,
}

pub const AK: &str = aero_test_support::ACCESS_KEY;
pub const SK: &str = aero_test_support::SECRET_KEY;

impl S3 {
    /// Starts s3s-fs with an empty `bucket` (the launcher's bucket).
    pub fn start(bucket: &str) -> S3 {
        assert_eq!(
            bucket,
            aero_test_support::BUCKET,
            "the test S3 server has one bucket"
        );
        let server = aero_test_support::S3Server::start();
        S3 {
            endpoint: server.endpoint(),
            _server: server,
        }
    }

    /// The storage URI of `bucket`.
    pub fn uri(&self, bucket: &str) -> String {
        format!("s3://{bucket}?endpoint={}&region=us-east-1", self.endpoint)
    }

    /// The credentials as environment variables.
    pub fn env() -> [(&'static str, &'static str); 2] {
        [("AWS_ACCESS_KEY_ID", AK), ("AWS_SECRET_ACCESS_KEY", SK)]
    }
}

/// Runs curl with `args` and returns (status line code, headers lowercased, body).
pub fn curl(args: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let tool = require_tool("curl", "apt-get install -y curl");
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new(tool)
        .args(["-s", "-D"])
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?} failed: {out:?}");
    let text = std::fs::read_to_string(&hdr).unwrap();
    // The final response's block (curl also writes interim ones such as `100 Continue`).
    let last = text.rfind("\nHTTP/").map_or(0, |i| i + 1);
    let mut lines = text[last..].lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, std::fs::read(&body).unwrap_or_default())
}

/// The value of header `name` in a curl header list.
pub fn hv<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub use aero_test_support::sha256;
