//! Publish then verify through the built binary against a real S3 server (s3s-fs), the `fs`
//! backend and the `memory` backend: layout, summary, HTTP metadata, zero chunks, re-runs,
//! the `latest.json` pointer and damage detection.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const CHUNK: u64 = 64 * 1024;
/// Ten chunks, the last one half size.
const SIZE: u64 = 9 * CHUNK + CHUNK / 2;
const DATA_CHUNKS: [u64; 5] = [0, 2, 3, 7, 9];
const ZERO_CHUNKS: [u64; 5] = [1, 4, 5, 6, 8];
const DATA_BYTES: u64 = 4 * CHUNK + CHUNK / 2;

/// Where a test publishes.
enum Target {
    S3(S3Server),
    Fs(PathBuf),
}

impl Target {
    fn run(&self, args: &[&str]) -> Output {
        match self {
            Target::S3(server) => server.run(args),
            Target::Fs(root) => {
                let storage = format!("fs:{}", root.display());
                aero()
                    .args(["--storage", &storage])
                    .args(args)
                    .output()
                    .unwrap()
            }
        }
    }

    /// The directory where the object `key` is a file (s3s-fs stores objects as files).
    fn file(&self, key: &str) -> PathBuf {
        match self {
            Target::S3(server) => server.bucket_dir().join(key),
            Target::Fs(root) => root.join(key),
        }
    }

    fn replace(&self, key: &str, body: &Path) {
        match self {
            Target::S3(server) => server.put(key, body),
            // A new object (new file, no recorded digest), as an S3 PUT makes.
            Target::Fs(_) => {
                std::fs::remove_file(self.file(key)).unwrap();
                std::fs::copy(body, self.file(key)).unwrap();
            }
        }
    }

    fn delete(&self, key: &str) {
        match self {
            Target::S3(server) => server.delete(key),
            Target::Fs(_) => std::fs::remove_file(self.file(key)).unwrap(),
        }
    }
}

/// The patterned disk as a qcow2 image in `dir` (so the zero chunks are zero extents), and
/// the sha256 of its guest-visible bytes.
fn make_disk(dir: &Path) -> (PathBuf, String) {
    let raw = dir.join("disk.raw");
    patterned_image(&raw, SIZE, CHUNK, &DATA_CHUNKS);
    let image = dir.join("disk.qcow2");
    qcow2_of(&raw, &image);
    (image, sha256_file(&raw))
}

fn publish_args<'a>(image: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "publish",
        "--file",
        image,
        "--prefix",
        "images/",
        "--image-id",
        "disk",
        "--compute-version",
        "sha256",
        "--publish-latest",
        "--chunk-size",
        "65536",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// Publishes the patterned image, checks the summary and the stored bytes, re-runs, verifies
/// through the pointer, then damages two chunks and checks that verify names both.
fn publish_verify_damage(target: &Target) {
    let work = tempfile::tempdir().unwrap();
    let (image, digest) = make_disk(work.path());
    let version = format!("sha256-{digest}");
    let image_str = image.to_str().unwrap();

    let out = ok(target.run(&publish_args(image_str, &[])));
    let summary = json(&out);
    assert_eq!(summary["image_id"], "disk");
    assert_eq!(summary["version"], version.as_str());
    let prefix = format!("images/disk/{version}/");
    assert_eq!(
        summary["manifest_key"],
        format!("{prefix}manifest.json").as_str()
    );
    assert_eq!(summary["latest_key"], "images/disk/latest.json");
    assert_eq!(summary["chunk_count"], 10);
    assert_eq!(summary["total_size"], SIZE);
    assert_eq!(summary["zero_chunks"], ZERO_CHUNKS.len());
    assert_eq!(summary["skipped_chunks"], 0);
    // Zero chunks are neither read nor uploaded (fs: sparse files; s3: server-side copies).
    assert_eq!(summary["bytes_uploaded"], DATA_BYTES, "{summary}");
    let read = summary["bytes_read"].as_u64().unwrap();
    assert!((DATA_BYTES..=2 * DATA_BYTES).contains(&read), "{summary}");
    assert!(summary["seconds"].as_f64().unwrap() >= 0.0);

    let version_dir = target.file(&prefix);
    assert_eq!(concat_chunks_sha256(&version_dir), digest);
    let m = manifest(&version_dir.join("manifest.json"));
    assert_eq!(m["schema"], "aero.chunked-disk-image.v1");
    assert_eq!(m["imageId"], "disk");
    assert_eq!(m["version"], version.as_str());
    assert_eq!(m["chunkIndexWidth"], 8);
    for i in ZERO_CHUNKS {
        assert_eq!(m["chunks"][i as usize]["zero"], true, "chunk {i}");
        let len = std::fs::metadata(version_dir.join(chunk_name(i)))
            .unwrap()
            .len();
        assert_eq!(len, CHUNK, "zero chunk {i} has the full size");
    }
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.file("images/disk/latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["schema"], "aero.chunked-disk-image.latest.v1");
    assert_eq!(latest["imageId"], "disk");
    assert_eq!(latest["version"], version.as_str());
    assert_eq!(
        latest["manifestKey"],
        format!("{prefix}manifest.json").as_str()
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(version_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["originalFilename"], "disk.qcow2");
    assert_eq!(meta["chunkCount"], 10);
    assert_eq!(meta["checksumAlgorithm"], "sha256");
    assert!(meta["createdAt"].as_str().unwrap().ends_with('Z'));

    // The same publish again: everything is already there.
    let again = json(&ok(target.run(&publish_args(image_str, &[]))));
    assert_eq!(again["skipped_chunks"], 10, "{again}");
    assert_eq!(again["bytes_uploaded"], 0, "{again}");
    assert_eq!(concat_chunks_sha256(&version_dir), digest);

    // Verify through latest.json at the image root, and at the version prefix.
    let out = ok(target.run(&["verify", "--prefix", "images/disk/"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Verified 10/10 chunks"), "{}", text(&out));
    let report = json(&ok(target.run(&[
        "verify",
        "--prefix",
        "images/disk/",
        "--image-id",
        "disk",
        "--json",
    ])));
    assert_eq!(report["checked_chunks"], 10);
    assert_eq!(report["checked_bytes"], SIZE);
    assert_eq!(report["version"], version.as_str());
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("latest.json")),
        "{report}"
    );
    ok(target.run(&["verify", "--prefix", &prefix]));
    fails_with(
        &target.run(&["verify", "--prefix", &prefix, "--image-id", "other"]),
        &["other"],
    );

    // Damage: chunk 2 corrupted (same size), chunk 7 deleted. Both must be named.
    let bad = work.path().join("bad.bin");
    std::fs::write(&bad, vec![0x5a; CHUNK as usize]).unwrap();
    target.replace(&format!("{prefix}{}", chunk_name(2)), &bad);
    target.delete(&format!("{prefix}{}", chunk_name(7)));
    let out = target.run(&["verify", "--prefix", "images/disk/"]);
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    let line2 = all
        .lines()
        .find(|l| l.contains("bad chunk 2 "))
        .unwrap_or_else(|| panic!("chunk 2 not named\n{all}"));
    assert!(
        line2.contains("00000002.bin") && line2.contains("sha256"),
        "{line2}"
    );
    let line7 = all
        .lines()
        .find(|l| l.contains("bad chunk 7 "))
        .unwrap_or_else(|| panic!("chunk 7 not named\n{all}"));
    assert!(
        line7.contains("00000007.bin") && line7.contains("missing"),
        "{line7}"
    );
    let report = json(&target.run(&["verify", "--prefix", "images/disk/", "--json"]));
    let bad: Vec<u64> = report["bad_chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["index"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![2, 7], "{report}");
    assert_eq!(report["checked_chunks"], 8);

    // Re-publishing repairs exactly the two damaged chunks.
    let repaired = json(&ok(target.run(&publish_args(image_str, &[]))));
    assert_eq!(repaired["skipped_chunks"], 8, "{repaired}");
    assert_eq!(repaired["bytes_uploaded"], 2 * CHUNK, "{repaired}");
    ok(target.run(&["verify", "--prefix", "images/disk/"]));
}

#[test]
fn s3_publish_verify_and_damage() {
    publish_verify_damage(&Target::S3(S3Server::start()));
}

#[test]
fn fs_publish_verify_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    publish_verify_damage(&Target::Fs(dir.path().join("store")));
}

#[test]
fn s3_objects_carry_http_metadata_and_zero_chunks_are_copies() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let (image, _) = make_disk(work.path());
    let summary = json(&ok(server.run(&publish_args(image.to_str().unwrap(), &[]))));
    let version = summary["version"].as_str().unwrap().to_string();
    let prefix = format!("images/disk/{version}/");

    for i in [0, 1, 4, 9] {
        let key = format!("{prefix}{}", chunk_name(i));
        let head = server.head(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert_http_meta(&head, "application/octet-stream", IMMUTABLE);
        let want = if i == 9 { CHUNK / 2 } else { CHUNK };
        assert_eq!(head["ContentLength"], want, "{key}: {head}");
    }
    for name in ["manifest.json", "meta.json"] {
        let head = server.head(&format!("{prefix}{name}")).unwrap();
        assert_http_meta(&head, "application/json", IMMUTABLE);
    }
    let head = server.head("images/disk/latest.json").unwrap();
    assert_http_meta(&head, "application/json", LATEST);
    // Every zero chunk holds zeros, though only data was uploaded.
    for i in ZERO_CHUNKS {
        let bytes = std::fs::read(server.bucket_dir().join(&prefix).join(chunk_name(i))).unwrap();
        assert_eq!(bytes.len() as u64, CHUNK);
        assert!(bytes.iter().all(|&b| b == 0), "chunk {i}");
    }
    assert_eq!(summary["bytes_uploaded"], DATA_BYTES);
}

#[test]
fn s3_cache_control_overrides_reach_every_object() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let (image, _) = make_disk(work.path());
    let (chunks_cc, manifest_cc, latest_cc) = (
        "public, max-age=600, no-transform",
        "no-cache, No-Transform",
        "no-store,no-transform",
    );
    let summary = json(&ok(server.run(&publish_args(
        image.to_str().unwrap(),
        &[
            "--cache-control-chunks",
            chunks_cc,
            "--cache-control-manifest",
            manifest_cc,
            "--cache-control-latest",
            latest_cc,
        ],
    ))));
    let prefix = format!("images/disk/{}/", summary["version"].as_str().unwrap());
    for i in [0, 1, 5] {
        let head = server.head(&format!("{prefix}{}", chunk_name(i))).unwrap();
        assert_http_meta(&head, "application/octet-stream", chunks_cc);
    }
    for name in ["manifest.json", "meta.json"] {
        let head = server.head(&format!("{prefix}{name}")).unwrap();
        assert_http_meta(&head, "application/json", manifest_cc);
    }
    let head = server.head("images/disk/latest.json").unwrap();
    assert_http_meta(&head, "application/json", latest_cc);
}

#[test]
fn s3_wrong_secret_fails_clearly_and_writes_nothing() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let (image, _) = make_disk(work.path());
    let out = server
        .aero()
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["--storage", &server.storage()])
        .args(publish_args(image.to_str().unwrap(), &["--retries", "1"]))
        .output()
        .unwrap();
    let err = fails_with(&out, &["access denied", "credentials", "403"]);
    assert!(err.contains(BUCKET) || err.contains("images/disk"), "{err}");
    assert!(files_under(&server.bucket_dir()).is_empty());
    // Verify with the wrong secret fails as clearly.
    let out = server
        .aero()
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["--storage", &server.storage()])
        .args(["verify", "--prefix", "images/disk/", "--retries", "1"])
        .output()
        .unwrap();
    fails_with(&out, &["access denied", "credentials"]);
}

#[test]
fn s3_flags_select_the_s3_backend() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let (image, _) = make_disk(work.path());
    let out = server
        .aero()
        .args(publish_args(image.to_str().unwrap(), &[]))
        .args(["--bucket", BUCKET, "--endpoint", &server.endpoint()])
        .args(["--region", "us-east-1", "--force-path-style"])
        .output()
        .unwrap();
    let summary = json(&ok(out));
    assert_eq!(summary["chunk_count"], 10);
    let out = server
        .aero()
        .args(["verify", "--prefix", "images/disk/", "--bucket", BUCKET])
        .args(["--endpoint", &server.endpoint(), "--force-path-style"])
        .output()
        .unwrap();
    ok(out);
}

#[test]
fn memory_run_publishes_and_verifies_in_one_process() {
    let work = tempfile::tempdir().unwrap();
    let (_, digest) = make_disk(work.path());
    let v3 = fixture("v3.qcow2");
    let config = write_config(
        work.path(),
        "memory.toml",
        &format!(
            r#"
[storage]
type = "memory"

[[publish]]
file = "disk.qcow2"
prefix = "images/"
image_id = "disk"
compute_version = "sha256"
publish_latest = true
chunk_size = 65536
verify = true

[[publish]]
file = "{}"
prefix = "images/base/v1/"
chunk_size = 1048576
concurrency = 2
verify = true
verify_chunk_sample = 3
"#,
            v3.display()
        ),
    );
    let out = ok(aero()
        .args(["run", config.to_str().unwrap(), "--json"])
        .output()
        .unwrap());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{}", text(&out));
    let (disk, base) = (&lines[0], &lines[1]);
    assert_eq!(disk["image_id"], "disk");
    assert_eq!(disk["version"], format!("sha256-{digest}").as_str());
    assert_eq!(disk["chunk_count"], 10);
    assert_eq!(disk["zero_chunks"], ZERO_CHUNKS.len());
    assert_eq!(base["image_id"], "base");
    assert_eq!(base["version"], "v1");
    assert_eq!(base["manifest_key"], "images/base/v1/manifest.json");
    assert_eq!(base["chunk_count"], 64);
    let (disk_report, base_report) = (&lines[2], &lines[3]);
    assert_eq!(disk_report["checked_chunks"], 10);
    assert_eq!(disk_report["bad_chunks"].as_array().unwrap().len(), 0);
    assert_eq!(base_report["checked_chunks"], 4, "{base_report}");
    assert_eq!(base_report["total_chunks"], 64);
}
