//! `aero-host publish` refuses bad flags and bad images through the binary, with a clear
//! message and nothing stored.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    _dir: tempfile::TempDir,
    store: PathBuf,
    image: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        patterned_image(&image, 4 * 65536, 65536, &[0, 2]);
        Case {
            store: dir.path().join("store"),
            image,
            _dir: dir,
        }
    }

    fn publish(&self, file: &Path, extra: &[&str]) -> std::process::Output {
        aero()
            .arg("--storage")
            .arg(format!("fs:{}", self.store.display()))
            .args(["publish", "--file"])
            .arg(file)
            .args(["--prefix", "images/disk/v1/"])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Fails with all `needles` in the message and stores nothing.
    #[track_caller]
    fn refused(&self, file: &Path, extra: &[&str], needles: &[&str]) {
        fails_with(&self.publish(file, extra), needles);
        let stored: Vec<String> = files_under(&self.store)
            .into_iter()
            .filter(|f| !f.starts_with(".aero-staging"))
            .collect();
        assert!(stored.is_empty(), "{extra:?} stored {stored:?}");
    }
}

#[test]
fn bad_flags_are_refused() {
    let c = Case::new();
    let img = c.image.clone();
    c.refused(&img, &["--chunk-size", "1000"], &["--chunk-size", "512"]);
    c.refused(&img, &["--chunk-size", "0"], &["--chunk-size"]);
    c.refused(
        &img,
        &["--chunk-size", "134217728"],
        &["--chunk-size", "64 MiB"],
    );
    c.refused(&img, &["--concurrency", "0"], &["--concurrency"]);
    c.refused(&img, &["--retries", "0"], &["--retries"]);
    for flag in [
        "--cache-control-chunks",
        "--cache-control-manifest",
        "--cache-control-latest",
    ] {
        c.refused(&img, &[flag, "public, max-age=60"], &[flag, "no-transform"]);
    }
    c.refused(&img, &["--checksum", "md5"], &["md5"]);
    c.refused(&img, &["--compute-version", "md5"], &["md5"]);
    c.refused(
        &img,
        &["--compute-version", "sha256", "--image-version", "v2"],
        &["v2", "computed version"],
    );
    c.refused(&img, &["--bucket", "b"], &["--storage", "--bucket"]);
    // The exact chunk-size limit is accepted.
    ok(c.publish(&img, &["--chunk-size", "67108864", "--json"]));
}

#[test]
fn prefixes_with_leading_or_doubled_slashes_are_refused() {
    let c = Case::new();
    for (prefix, problem) in [
        ("/images/disk/v1/", "starts with '/'"),
        ("images//disk/v1/", "empty segment ('//')"),
        ("/images//disk/", "starts with '/'"),
    ] {
        let out = aero()
            .arg("--storage")
            .arg(format!("fs:{}", c.store.display()))
            .args(["publish", "--file"])
            .arg(&c.image)
            .args(["--prefix", prefix])
            .output()
            .unwrap();
        fails_with(&out, &[&format!("--prefix '{prefix}'"), problem]);
        assert!(files_under(&c.store).is_empty(), "{prefix}");
    }
}

#[test]
fn bad_images_are_refused() {
    let c = Case::new();
    // A raw image whose size is not a multiple of 512.
    let odd = c._dir.path().join("odd.raw");
    let status = Command::new("truncate")
        .args(["-s", "1000000"])
        .arg(&odd)
        .status()
        .unwrap();
    assert!(status.success());
    c.refused(&odd, &[], &["1000000", "multiple of 512"]);
    c.refused(&fixture("empty.raw"), &[], &["size", "> 0"]);
    c.refused(&fixture("truncated.qcow2"), &[], &["truncated.qcow2"]);
    c.refused(
        &fixture("overlay.qcow2"),
        &[],
        &["backing file", "--allow-backing"],
    );
    c.refused(
        &c._dir.path().join("nonexistent.raw"),
        &[],
        &["nonexistent.raw"],
    );
    c.refused(&c.image, &["--format", "qcow2"], &["qcow2"]);
    c.refused(&c.image, &["--format", "floppy"], &["floppy"]);
}

#[test]
fn storage_selection_errors() {
    let c = Case::new();
    let out = aero()
        .args(["publish", "--file"])
        .arg(&c.image)
        .args(["--prefix", "images/disk/v1/"])
        .output()
        .unwrap();
    fails_with(&out, &["no storage", "--storage"]);
    let out = aero()
        .args(["--storage", "ftp:somewhere", "publish", "--file"])
        .arg(&c.image)
        .args(["--prefix", "images/disk/v1/"])
        .output()
        .unwrap();
    fails_with(&out, &["ftp"]);
    let out = aero()
        .args(["--storage", "fs:", "publish", "--file"])
        .arg(&c.image)
        .output()
        .unwrap();
    fails_with(&out, &["fs:PATH"]);
    let out = aero()
        .args(["publish", "--file"])
        .arg(&c.image)
        .args(["--prefix", "images/disk/v1/", "--endpoint", "http://x"])
        .output()
        .unwrap();
    fails_with(&out, &["--bucket"]);
    // No version from anywhere.
    let out = aero()
        .arg("--storage")
        .arg(format!("fs:{}", c.store.display()))
        .args(["publish", "--prefix", "disk", "--file"])
        .arg(&c.image)
        .output()
        .unwrap();
    fails_with(&out, &["--image-version"]);
}

#[test]
fn s3s_fs_is_required_and_its_absence_is_explained() {
    // The S3 tests need s3s-fs: its absence must fail with the install command, not skip.
    let bin = s3s_fs_binary();
    assert!(bin.is_file());
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());
}
