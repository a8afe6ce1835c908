//! The support every test module shares: running the built binary and chunk checks, on top of
//! `aero-test-support` (the qemu-made fixture set, the one s3s-fs launcher, the one
//! tool-finding policy and digests); [`serve`] adds what the `serve_*` tests need.

pub mod browser;
pub mod lease;
pub mod nbd;
pub mod pull;
pub mod serve;

pub use aero_test_support::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let status = Command::new(qemu_img_binary())
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

/// Running the binary against an [`S3Server`].
pub trait AeroOnS3 {
    /// An `aero-host` command with the server's credentials in the environment.
    fn aero(&self) -> Command;
    /// Runs `aero-host --storage <this server> ARGS` with the right credentials.
    fn run(&self, args: &[&str]) -> Output;
}

impl AeroOnS3 for S3Server {
    fn aero(&self) -> Command {
        let mut cmd = aero();
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        AeroOnS3::aero(self)
            .arg("--storage")
            .arg(self.storage())
            .args(args)
            .output()
            .expect("running aero-host")
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
