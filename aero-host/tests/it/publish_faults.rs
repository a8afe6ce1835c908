//! Faults during a publish, through the binary: the S3 server dies mid-way; the publisher is
//! SIGKILLed mid-way and re-run.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIG: u64 = 256 * 1024 * 1024;
const CHUNK: u64 = 512 * 1024;

/// Waits until `dir` holds at least `n` files; panics if `child` exits first.
fn wait_for_chunks(dir: &Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if files_under(dir).len() >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the publish ended ({status}) before {n} chunks were stored");
        }
        assert!(
            Instant::now() < deadline,
            "no progress in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` (a hang guard, not a timing assertion) and returns its output.
fn finish(child: Child) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(600))
        .expect("the publish hung")
        .unwrap()
}

fn big_image(dir: &Path) -> PathBuf {
    let image = dir.join("big.raw");
    random_file(&image, BIG);
    image
}

fn publish_cmd(mut cmd: Command, storage: &str, image: &Path, extra: &[&str]) -> Child {
    cmd.args(["--storage", storage, "publish", "--file"])
        .arg(image)
        .args([
            "--prefix",
            "images/",
            "--image-id",
            "big",
            "--publish-latest",
        ])
        .args(["--chunk-size", &CHUNK.to_string(), "--concurrency", "1"])
        .args(["--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every file named manifest.json, meta.json or latest.json under `dir`.
fn published_json(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            f.ends_with("manifest.json") || f.ends_with("latest.json") || f.ends_with("meta.json")
        })
        .collect()
}

#[test]
fn s3_server_dying_mid_publish_fails_without_manifest_or_pointer() {
    let mut server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let image = big_image(work.path());
    let child = publish_cmd(
        server.aero(),
        &server.storage(),
        &image,
        &["--image-version", "v1", "--retries", "2"],
    );
    let mut child = child;
    let chunks = server.bucket_dir().join("images/big/v1/chunks");
    wait_for_chunks(&chunks, 3, &mut child);
    server.kill();
    let out = finish(child);
    let err = fails_with(&out, &["images/big/v1/chunks/", "s3://images-bucket"]);
    assert!(
        err.to_lowercase().contains("connect") || err.to_lowercase().contains("refused"),
        "the error should say the store is unreachable: {err}"
    );
    assert!(json_lines(&out).is_empty(), "no summary on failure");
    // The failure is reported once, by the command: the storage layer's own log of each failed
    // operation stays at debug level.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].starts_with("aero-host: error: "), "{stderr}");
    let stored = files_under(&server.bucket_dir());
    assert!(stored.len() >= 3 && (stored.len() as u64) < BIG / CHUNK);
    assert_eq!(published_json(&server.bucket_dir()), Vec::<String>::new());
}

/// SIGKILLs a publish once `min_stored` chunks exist, re-runs it, and checks that stored
/// chunks were skipped, not uploaded again.
fn killed_publish_resumes(
    storage: &str,
    make_cmd: &dyn Fn() -> Command,
    chunks_dir: &Path,
    store_root: &Path,
    extra: &[&str],
) {
    let work = tempfile::tempdir().unwrap();
    let image = big_image(work.path());
    let count = BIG / CHUNK;
    let mut child = publish_cmd(make_cmd(), storage, &image, extra);
    wait_for_chunks(chunks_dir, 20, &mut child);
    child.kill().unwrap(); // SIGKILL
    let out = finish(child);
    assert!(!out.status.success());
    assert_eq!(
        published_json(store_root),
        Vec::<String>::new(),
        "killed before the end, so no manifest, meta or pointer"
    );
    let stored = files_under(chunks_dir)
        .iter()
        .filter(|f| std::fs::metadata(chunks_dir.join(f)).unwrap().len() == CHUNK)
        .count() as u64;
    assert!(
        (20..count).contains(&stored),
        "{stored} of {count} chunks stored"
    );

    let out = ok(finish(publish_cmd(make_cmd(), storage, &image, extra)));
    let summary = json(&out);
    assert_eq!(summary["chunk_count"], count);
    assert_eq!(summary["skipped_chunks"], stored, "{summary}");
    assert_eq!(
        summary["bytes_uploaded"],
        (count - stored) * CHUNK,
        "only what was missing is uploaded: {summary}"
    );
    let version = summary["version"].as_str().unwrap().to_string();
    let digest = sha256_file(&image);
    if version.starts_with("sha256-") {
        assert_eq!(version, format!("sha256-{digest}"));
    }
    let version_dir = store_root.join(format!("images/big/{version}"));
    assert_eq!(concat_chunks_sha256(&version_dir), digest);
    assert_eq!(published_json(store_root).len(), 3);
}

#[test]
fn s3_publish_killed_and_rerun_skips_stored_chunks() {
    let server = S3Server::start();
    // The version is computed first, so its directory is known only once chunks appear.
    let watch = ChunkWatch(server.bucket_dir().join("images/big"));
    s3_killed_publish_resumes(&server, &watch);
}

/// The chunk directory of the one version under an image root, once it exists.
struct ChunkWatch(PathBuf);

impl ChunkWatch {
    fn dir(&self) -> PathBuf {
        std::fs::read_dir(&self.0)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path().join("chunks"))))
            .unwrap_or_else(|| self.0.join("not-yet"))
    }
}

/// Like [`killed_publish_resumes`] on S3 with a computed version: the re-run skips stored
/// chunks by the digests recorded on the objects, without reading them back.
fn s3_killed_publish_resumes(server: &S3Server, watch: &ChunkWatch) {
    let storage = server.storage();
    let make = || server.aero();
    let work = tempfile::tempdir().unwrap();
    let image = big_image(work.path());
    let count = BIG / CHUNK;
    let extra = ["--compute-version", "sha256", "--retries", "2"];
    let mut child = publish_cmd(make(), &storage, &image, &extra);
    let deadline = Instant::now() + Duration::from_secs(300);
    while files_under(&watch.dir()).len() < 20 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the publish ended ({status}) before 20 chunks were stored");
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let out = finish(child);
    assert!(!out.status.success());
    let chunks_dir = watch.dir();
    let root = server.bucket_dir();
    assert_eq!(published_json(&root), Vec::<String>::new());
    let stored = files_under(&chunks_dir)
        .iter()
        .filter(|f| std::fs::metadata(chunks_dir.join(f)).unwrap().len() == CHUNK)
        .count() as u64;
    assert!((20..count).contains(&stored), "{stored} of {count}");

    let summary = json(&ok(finish(publish_cmd(make(), &storage, &image, &extra))));
    assert_eq!(summary["skipped_chunks"], stored, "{summary}");
    assert_eq!(
        summary["bytes_uploaded"],
        (count - stored) * CHUNK,
        "{summary}"
    );
    let digest = sha256_file(&image);
    assert_eq!(summary["version"], format!("sha256-{digest}").as_str());
    assert_eq!(concat_chunks_sha256(chunks_dir.parent().unwrap()), digest);
    assert_eq!(published_json(&root).len(), 3);
    // A re-run now uploads nothing, and the chunks carry their metadata.
    let again = json(&ok(finish(publish_cmd(make(), &storage, &image, &extra))));
    assert_eq!(again["skipped_chunks"], count);
    assert_eq!(again["bytes_uploaded"], 0);
    let version = summary["version"].as_str().unwrap();
    let head = server
        .head(&format!("images/big/{version}/{}", chunk_name(1)))
        .unwrap();
    assert_http_meta(&head, "application/octet-stream", IMMUTABLE);
    assert_eq!(head["ContentLength"], CHUNK);
}

#[test]
fn fs_publish_killed_and_rerun_skips_stored_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let storage = format!("fs:{}", root.display());
    killed_publish_resumes(
        &storage,
        &aero,
        &root.join("images/big/v1/chunks"),
        &root,
        &["--image-version", "v1"],
    );
}

/// Every manifest under `root` names only chunks present with their size and digest, and
/// every `latest.json` only a manifest that exists.
fn assert_store_consistent(root: &Path) {
    for file in published_json(root) {
        let path = root.join(&file);
        if file.ends_with("manifest.json") {
            concat_chunks_sha256(path.parent().unwrap());
        } else if file.ends_with("latest.json") {
            let latest = manifest(&path);
            let key = latest["manifestKey"].as_str().unwrap();
            assert!(root.join(key).is_file(), "{file} names the missing {key}");
        } else {
            assert!(
                path.with_file_name("manifest.json").is_file(),
                "{file} alone"
            );
        }
    }
}

/// SIGKILLs fs publishes at moments spread over a whole publish (chunks, the durability
/// barrier, manifest, meta, pointer), several times over one store, alternating an explicit
/// and a computed version: after every kill no manifest names a missing or short chunk and
/// no pointer a missing manifest; a final run of each completes and verifies.
#[test]
fn fs_publish_killed_at_random_moments_never_names_a_missing_chunk() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    // Every fourth chunk is a hole: zero objects are written too.
    let data: Vec<u64> = (0..SIZE / CHUNK).filter(|i| i % 4 != 3).collect();
    patterned_image(&image, SIZE, CHUNK, &data);
    let modes: [&[&str]; 2] = [
        &["--image-version", "v1"],
        &["--compute-version", "manifest-sha256"],
    ];

    // How long a whole publish takes here, so the kills land anywhere in one.
    let scratch = format!("fs:{}", work.path().join("scratch").display());
    let started = Instant::now();
    ok(finish(publish_cmd(aero(), &scratch, &image, modes[1])));
    let whole = started.elapsed().as_millis() as u64 + 1;

    let root = work.path().join("store");
    let storage = format!("fs:{}", root.display());
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for run in 0..10 {
        // xorshift: a different spread of kill moments on every test run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(rng % whole);
        let mut child = publish_cmd(aero(), &storage, &image, modes[run % 2]);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; it may have finished already
        finish(child);
        assert_store_consistent(&root);
    }
    for mode in modes {
        ok(finish(publish_cmd(aero(), &storage, &image, mode)));
    }
    assert_store_consistent(&root);
    ok(run(&[
        "--storage",
        &storage,
        "verify",
        "--prefix",
        "images/big/v1/",
    ]));
    // latest.json names the computed version, published last.
    ok(run(&[
        "--storage",
        &storage,
        "verify",
        "--prefix",
        "images/big/",
    ]));
    let latest = manifest(&root.join("images/big/latest.json"));
    assert!(
        latest["version"].as_str().unwrap().starts_with("mh1-"),
        "{latest}"
    );
}
