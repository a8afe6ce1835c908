//! Helpers shared by the publish, verify, config and CLI tests: running the built binary,
//! the qemu-made fixture set, a real S3 server (s3s-fs) per test, and chunk checks.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Access key of every test S3 server.
pub const ACCESS_KEY: &str = "aero-test-key";
/// Secret key of every test S3 server.
pub const SECRET_KEY: &str = "aero-test-secret";
/// The bucket every test S3 server has.
pub const BUCKET: &str = "images-bucket";

/// The default Cache-Control of chunks, manifests and meta.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable, no-transform";
/// The default Cache-Control of `latest.json`.
pub const LATEST: &str = "public, max-age=60, no-transform";

/// A command running the built `aero-host` binary, with AWS variables cleared.
pub fn aero() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aero-host"));
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AERO_STORAGE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("AERO_BACKEND_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `aero-host ARGS`.
pub fn run(args: &[&str]) -> Output {
    aero().args(args).output().expect("running aero-host")
}

/// stdout and stderr of a run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stderr of a run.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Asserts success and returns the output.
#[track_caller]
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "expected success\n{}", text(&out));
    out
}

/// Asserts failure with every one of `needles` (case-insensitive) in stderr; returns stderr.
#[track_caller]
pub fn fails_with(out: &Output, needles: &[&str]) -> String {
    assert!(!out.status.success(), "expected failure\n{}", text(out));
    let err = stderr(out);
    let lower = err.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr lacks '{needle}'\n{}",
            text(out)
        );
    }
    err
}

/// The JSON objects printed on stdout, one a line.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The single JSON object printed on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    let mut lines = json_lines(out);
    assert_eq!(lines.len(), 1, "one JSON line expected\n{}", text(out));
    lines.remove(0)
}

/// The qemu-made fixture directory (`<workspace>/target/fixtures`), generated when missing.
pub fn fixtures() -> PathBuf {
    aero_plugin_testkit::Fixtures::builtin().dir().to_path_buf()
}

/// The fixture set with its `expected.tsv` rows.
pub fn fixture_set() -> aero_plugin_testkit::Fixtures {
    aero_plugin_testkit::Fixtures::builtin()
}

/// One fixture's path.
pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(path.is_file(), "fixture {} missing", path.display());
    path
}

/// Lowercase hex sha256.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Writes `size` bytes of `/dev/urandom` to `path`.
pub fn random_file(path: &Path, size: u64) {
    let mut src = std::fs::File::open("/dev/urandom").unwrap().take(size);
    let mut dst = std::fs::File::create(path).unwrap();
    std::io::copy(&mut src, &mut dst).unwrap();
}

/// A raw image of `size` bytes: data (a repeating, position-dependent pattern) in the chunks
/// listed in `data_chunks` of `chunk` bytes each, zeros elsewhere.
pub fn patterned_image(path: &Path, size: u64, chunk: u64, data_chunks: &[u64]) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    for &i in data_chunks {
        let len = chunk.min(size - i * chunk);
        let bytes: Vec<u8> = (0..len)
            .map(|o| ((i * 7919 + o * 31 + o / 4096) % 251) as u8 + 1)
            .collect();
        file.write_all_at(&bytes, i * chunk).unwrap();
    }
}

/// Converts a raw image to qcow2 with `qemu-img convert` (zeros stay unallocated, so the
/// qcow2 reader reports them as zero extents).
pub fn qcow2_of(raw: &Path, out: &Path) {
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out)
        .status()
        .expect("running qemu-img");
    assert!(status.success(), "qemu-img convert failed");
}

/// Reads a manifest file.
pub fn manifest(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Chunk file name `chunks/NNNNNNNN.bin`.
pub fn chunk_name(index: u64) -> String {
    format!("chunks/{index:08}.bin")
}

/// Concatenates the chunks of the manifest in `version_dir` (fs layout) and returns the
/// sha256 of the result, checking each chunk's size and digest against the manifest.
pub fn concat_chunks_sha256(version_dir: &Path) -> String {
    let m = manifest(&version_dir.join("manifest.json"));
    let count = m["chunkCount"].as_u64().unwrap();
    let chunks = m["chunks"].as_array().unwrap();
    assert_eq!(chunks.len() as u64, count);
    let mut whole = Sha256::new();
    let mut total = 0;
    for (i, entry) in chunks.iter().enumerate() {
        let bytes = std::fs::read(version_dir.join(chunk_name(i as u64))).unwrap();
        assert_eq!(
            bytes.len() as u64,
            entry["size"].as_u64().unwrap(),
            "chunk {i}"
        );
        if let Some(d) = entry["sha256"].as_str() {
            assert_eq!(sha256(&bytes), d, "chunk {i} digest");
        }
        total += bytes.len() as u64;
        whole.update(&bytes);
    }
    assert_eq!(total, m["totalSize"].as_u64().unwrap());
    hex::encode(whole.finalize())
}

/// Every file under `dir` (relative paths), skipping nothing.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Where s3s-fs is: `$S3S_FS`, else `s3s-fs` on PATH, else `~/.cargo/bin/s3s-fs`.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("s3s-fs");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cargo/bin/s3s-fs");
    assert!(
        p.is_file(),
        "s3s-fs (the S3 server these tests run against) is not installed: install it with \
         `cargo install s3s-fs@0.14.1 --features binary --locked`, or point $S3S_FS at it"
    );
    p
}

/// A real S3-compatible server (s3s-fs) on an ephemeral port, storing under its own
/// directory, with one bucket. Killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    /// Port it listens on.
    pub port: u16,
    /// Its data directory (buckets are directories in it).
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with [`BUCKET`].
    pub fn start() -> S3Server {
        let bin = s3s_fs_binary();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    // Probably lost the port to someone else: try another.
                    eprintln!("s3s-fs exited early ({status}); retrying on another port");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child: Some(child),
                        port,
                        root,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start s3s-fs");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `--storage` URI of the bucket.
    pub fn storage(&self) -> String {
        format!(
            "s3://{BUCKET}?endpoint={}&region=us-east-1",
            self.endpoint()
        )
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(BUCKET)
    }

    /// An `aero-host` command with the server's credentials in the environment.
    pub fn aero(&self) -> Command {
        let mut cmd = aero();
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    }

    /// Runs `aero-host --storage <this server> ARGS` with the right credentials.
    pub fn run(&self, args: &[&str]) -> Output {
        self.aero()
            .arg("--storage")
            .arg(self.storage())
            .args(args)
            .output()
            .expect("running aero-host")
    }

    /// `aws s3api ARGS --endpoint-url ...` with the credentials; the JSON it prints, or
    /// `None` when it fails (e.g. 404).
    pub fn s3api(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new("aws")
            .arg("s3api")
            .args(args)
            .args(["--endpoint-url", &self.endpoint(), "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("running aws (pip install awscli)");
        if !out.status.success() {
            return None;
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Some(serde_json::Value::Null);
        }
        Some(serde_json::from_slice(&out.stdout).expect("aws printed JSON"))
    }

    /// A real HEAD of `key` in the bucket: `None` when it does not exist.
    pub fn head(&self, key: &str) -> Option<serde_json::Value> {
        self.s3api(&["head-object", "--bucket", BUCKET, "--key", key])
    }

    /// Replaces an object's body, keeping the given metadata.
    pub fn put(&self, key: &str, body: &Path) {
        self.s3api(&[
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            key,
            "--body",
            body.to_str().unwrap(),
            "--content-type",
            "application/octet-stream",
            "--cache-control",
            IMMUTABLE,
        ])
        .expect("put-object");
    }

    /// Deletes an object.
    pub fn delete(&self, key: &str) {
        self.s3api(&["delete-object", "--bucket", BUCKET, "--key", key])
            .expect("delete-object");
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks a HEAD response's Content-Type, Cache-Control and Content-Encoding.
#[track_caller]
pub fn assert_http_meta(head: &serde_json::Value, content_type: &str, cache_control: &str) {
    let got: BTreeMap<&str, Option<&str>> = ["ContentType", "CacheControl", "ContentEncoding"]
        .into_iter()
        .map(|k| (k, head[k].as_str()))
        .collect();
    assert_eq!(got["ContentType"], Some(content_type), "{head}");
    assert_eq!(got["CacheControl"], Some(cache_control), "{head}");
    assert_eq!(got["ContentEncoding"], Some("identity"), "{head}");
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
