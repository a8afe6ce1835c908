//! Test helpers shared by the workspace's crates: finding the tools tests need (a missing tool
//! fails the test with an install hint; no test passes by skipping), a real S3-compatible
//! server (s3s-fs) per test, sha256 helpers and the fixture set.

pub mod openssl;

use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key of every test S3 server.
pub const ACCESS_KEY: &str = "aero-test-key";
/// Secret key of every test S3 server.
pub const SECRET_KEY: &str = "aero-test-secret";
/// The bucket every test S3 server has.
pub const BUCKET: &str = "images-bucket";
/// The region test S3 clients use.
pub const REGION: &str = "us-east-1";

/// Finds the tool `name`: `$<env_var>` when set, else on `PATH`, else in `~/.cargo/bin`.
/// Panics with `install` (how to install it) when it is nowhere: a test needing a missing tool
/// fails, it never passes by skipping.
#[track_caller]
pub fn require_tool(name: &str, env_var: Option<&str>, install: &str) -> PathBuf {
    if let Some(p) = env_var.and_then(std::env::var_os) {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cargo/bin").join(name);
    assert!(p.is_file(), "{name} is not installed: {install}");
    p
}

/// Where s3s-fs is: `$S3S_FS`, else `s3s-fs` on PATH, else `~/.cargo/bin/s3s-fs`.
pub fn s3s_fs_binary() -> PathBuf {
    require_tool(
        "s3s-fs",
        Some("S3S_FS"),
        "it is the S3 server these tests run against; install it with \
         `cargo install s3s-fs@0.14.1 --features binary --locked`, or point $S3S_FS at it",
    )
}

/// Where qemu-img is.
pub fn qemu_img_binary() -> PathBuf {
    require_tool(
        "qemu-img",
        Some("QEMU_IMG"),
        "install it with `apt-get install qemu-utils`, or point $QEMU_IMG at it",
    )
}

/// A real S3-compatible server (s3s-fs) on an ephemeral port of 127.0.0.1, storing under its
/// own directory, with one bucket. Killed when dropped.
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
        format!("s3://{BUCKET}?endpoint={}&region={REGION}", self.endpoint())
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(BUCKET)
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
            .env("AWS_DEFAULT_REGION", REGION)
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

    /// Replaces an object's body with the content type and cache control of a chunk.
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
            "public, max-age=31536000, immutable, no-transform",
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

/// The qemu-made fixture directory (`<workspace>/target/fixtures`), generated when missing.
pub fn fixtures() -> PathBuf {
    fixture_set().dir().to_path_buf()
}

/// The fixture set with its `expected.tsv` rows.
pub fn fixture_set() -> aero_plugin_testkit::Fixtures {
    aero_plugin_testkit::Fixtures::builtin()
}

/// One fixture's path.
#[track_caller]
pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(path.is_file(), "fixture {} missing", path.display());
    path
}
