//! `aero-host verify` through the binary: storage prefix / latest pointer / manifest key /
//! manifest file modes, damage reports naming every bad chunk, sampling, and bad flags.

use crate::support::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const CHUNK: u64 = 64 * 1024;
const COUNT: u64 = 20;

/// A published image on fs: 20 chunks (some zero), with latest.json.
struct Published {
    _dir: tempfile::TempDir,
    root: PathBuf,
    storage: String,
    version: String,
}

impl Published {
    fn new() -> Published {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        patterned_image(&raw, COUNT * CHUNK, CHUNK, &[0, 1, 2, 5, 8, 13, 19]);
        let image = dir.path().join("disk.qcow2");
        qcow2_of(&raw, &image);
        let root = dir.path().join("store");
        let storage = format!("fs:{}", root.display());
        let out = ok(run(&[
            "--storage",
            &storage,
            "publish",
            "--file",
            image.to_str().unwrap(),
            "--prefix",
            "images/disk/",
            "--compute-version",
            "sha256",
            "--publish-latest",
            "--chunk-size",
            &CHUNK.to_string(),
            "--json",
        ]));
        let version = json(&out)["version"].as_str().unwrap().to_string();
        assert!(version.starts_with("sha256-"));
        Published {
            _dir: dir,
            root,
            storage,
            version,
        }
    }

    fn version_dir(&self) -> PathBuf {
        self.root.join(format!("images/disk/{}", self.version))
    }

    fn chunk(&self, i: u64) -> PathBuf {
        self.version_dir().join(chunk_name(i))
    }

    fn manifest_file(&self) -> PathBuf {
        self.version_dir().join("manifest.json")
    }

    fn verify(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--storage", &self.storage, "verify"];
        all.extend_from_slice(args);
        run(&all)
    }
}

/// Overwrites one byte in place (the file keeps its name and any recorded metadata).
fn flip_byte(path: &Path, at: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

/// Replaces the object with a copy whose byte `at` is flipped: a new file, so other names of
/// its inode (zero chunks are hard links to one file) keep their bytes.
fn replace_with_flipped_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0xff;
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn bad_indices(report: &serde_json::Value) -> Vec<u64> {
    report["bad_chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn verifies_by_pointer_version_prefix_key_and_file() {
    let p = Published::new();
    // The image root: through latest.json.
    let out = ok(p.verify(&["--prefix", "images/disk/"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified 20/20 chunks"),
        "{}",
        text(&out)
    );
    assert!(stderr(&out).contains("latest.json"), "{}", text(&out));
    // The image root plus a version.
    ok(p.verify(&["--prefix", "images/disk/", "--image-version", &p.version]));
    // The version prefix.
    ok(p.verify(&["--prefix", &format!("images/disk/{}/", p.version)]));
    // The manifest key.
    let key = format!("images/disk/{}/manifest.json", p.version);
    ok(p.verify(&["--manifest-key", &key, "--image-id", "disk"]));
    // The manifest file.
    let report = json(&ok(run(&[
        "verify",
        "--manifest-file",
        p.manifest_file().to_str().unwrap(),
        "--json",
    ])));
    assert_eq!(report["checked_chunks"], COUNT);
    assert_eq!(report["total_chunks"], COUNT);
    assert_eq!(report["checked_bytes"], COUNT * CHUNK);
    // Identity checks.
    fails_with(
        &p.verify(&["--manifest-key", &key, "--image-version", "v9"]),
        &["v9"],
    );
    fails_with(
        &p.verify(&["--prefix", "images/disk/", "--image-version", "v9"]),
        &["v9"],
    );
    // Nothing there.
    fails_with(
        &p.verify(&["--prefix", "images/other/"]),
        &["images/other/manifest.json", "images/other/latest.json"],
    );
}

#[test]
fn a_pointer_at_a_missing_or_wrong_manifest_is_an_error() {
    let p = Published::new();
    let latest_path = p.root.join("images/disk/latest.json");
    let good = std::fs::read_to_string(&latest_path).unwrap();
    let missing = "sha256-".to_string() + &"0".repeat(64);
    std::fs::write(&latest_path, good.replace(&p.version, &missing)).unwrap();
    let out = p.verify(&["--prefix", "images/disk/"]);
    fails_with(&out, &[&missing]);
    // Checked also when verifying the version directly: the pointer names a missing manifest.
    let out = p.verify(&["--prefix", &format!("images/disk/{}/", p.version)]);
    fails_with(&out, &["latest.json", "does not exist"]);
    // A pointer whose imageId disagrees with the manifest.
    std::fs::write(
        &latest_path,
        good.replace("\"imageId\": \"disk\"", "\"imageId\": \"other\""),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&latest_path).unwrap(), good);
    fails_with(&p.verify(&["--prefix", "images/disk/"]), &["other"]);
}

#[test]
fn a_corrupted_and_a_deleted_chunk_are_both_named() {
    let p = Published::new();
    flip_byte(&p.chunk(5), 100);
    std::fs::remove_file(p.chunk(13)).unwrap();
    let check = |out: &std::process::Output| {
        assert!(!out.status.success(), "{}", text(out));
        let all = text(out);
        let l5 = all
            .lines()
            .find(|l| l.contains("bad chunk 5 "))
            .unwrap_or_else(|| panic!("chunk 5 not named\n{all}"));
        assert!(l5.contains("00000005.bin") && l5.contains("sha256"), "{l5}");
        let l13 = all
            .lines()
            .find(|l| l.contains("bad chunk 13 "))
            .unwrap_or_else(|| panic!("chunk 13 not named\n{all}"));
        assert!(
            l13.contains("00000013.bin") && l13.contains("missing"),
            "{l13}"
        );
        assert!(all.contains("FAILED: 2 bad chunk(s)"), "{all}");
    };
    check(&p.verify(&["--prefix", "images/disk/"]));
    check(&run(&[
        "verify",
        "--manifest-file",
        p.manifest_file().to_str().unwrap(),
    ]));
    let report = json(&p.verify(&["--prefix", "images/disk/", "--json", "--concurrency", "1"]));
    assert_eq!(bad_indices(&report), vec![5, 13]);
    assert_eq!(report["checked_chunks"], COUNT - 2);

    // A chunk of the wrong size is named with both sizes.
    std::fs::write(p.chunk(13), vec![1u8; 1000]).unwrap();
    let report = json(&p.verify(&["--prefix", "images/disk/", "--json"]));
    let bad = &report["bad_chunks"][1];
    assert_eq!(bad["index"], 13);
    let problem = bad["problem"].as_str().unwrap();
    assert!(
        problem.contains("1000") && problem.contains("65536"),
        "{problem}"
    );
}

#[test]
fn chunk_sampling_is_seeded_and_always_checks_the_last_chunk() {
    let p = Published::new();
    // Damage every chunk but the last, each on its own: zero chunks share one inode, so a flip
    // in place would hit them all at once (and an even number of flips would undo itself).
    use std::os::unix::fs::MetadataExt;
    let inode = |i| std::fs::metadata(p.chunk(i)).unwrap().ino();
    assert_eq!(inode(3), inode(4), "zero chunks are links to one file");
    for i in 0..COUNT - 1 {
        replace_with_flipped_byte(&p.chunk(i), 7);
    }
    // A sample's bad chunks are then exactly the sampled ones.
    let sample = |n: &str, seed: Option<&str>| {
        let mut args = vec!["--prefix", "images/disk/", "--json", "--chunk-sample", n];
        if let Some(s) = seed {
            args.extend_from_slice(&["--chunk-sample-seed", s]);
        }
        let out = p.verify(&args);
        (out.status.success(), json(&out))
    };
    let (passed, report) = sample("3", Some("42"));
    assert!(!passed);
    let bad = bad_indices(&report);
    assert_eq!(bad.len(), 3, "{report}");
    assert!(bad.iter().all(|&i| i < COUNT - 1));
    assert_eq!(
        report["checked_chunks"], 1,
        "the last chunk is always checked"
    );
    assert_eq!(
        bad_indices(&sample("3", Some("42")).1),
        bad,
        "same seed, same sample"
    );
    let sets: std::collections::BTreeSet<Vec<u64>> = (1..=8)
        .map(|s| bad_indices(&sample("3", Some(&s.to_string())).1))
        .collect();
    assert!(sets.len() > 1, "seeds choose different samples: {sets:?}");
    // 0 checks only the final chunk, which is good.
    let (passed, report) = sample("0", Some("1"));
    assert!(passed, "{report}");
    assert_eq!(report["checked_chunks"], 1);
    assert_eq!(bad_indices(&report), Vec::<u64>::new());
    // N + 1 >= chunkCount checks everything.
    let (passed, report) = sample("19", None);
    assert!(!passed);
    assert_eq!(bad_indices(&report).len() as u64, COUNT - 1);
    assert_eq!(report["checked_chunks"], 1);
    // Unseeded samples still have the right size.
    let (_, report) = sample("5", None);
    assert_eq!(bad_indices(&report).len(), 5);
}

#[test]
fn meta_json_must_agree_and_may_be_missing() {
    let p = Published::new();
    let meta = p.version_dir().join("meta.json");
    let text_meta = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text_meta.replace("\"chunkCount\": 20", "\"chunkCount\": 21"),
    )
    .unwrap();
    fails_with(&p.verify(&["--prefix", "images/disk/"]), &["chunkCount"]);
    std::fs::remove_file(&meta).unwrap();
    let out = ok(p.verify(&["--prefix", "images/disk/"]));
    assert!(
        stderr(&out).contains("meta.json not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn manifest_file_mode_checks_its_own_directory() {
    let p = Published::new();
    let copy = tempfile::tempdir().unwrap();
    let m = copy.path().join("manifest.json");
    std::fs::copy(p.manifest_file(), &m).unwrap();
    // No chunks next to the copy: every chunk is missing.
    let report = json(&run(&[
        "verify",
        "--manifest-file",
        m.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(bad_indices(&report), (0..COUNT).collect::<Vec<_>>());
    // A manifest that breaks the format's rules.
    let text_m = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text_m.replace("\"chunkCount\": 20", "\"chunkCount\": 19"),
    )
    .unwrap();
    fails_with(
        &run(&["verify", "--manifest-file", m.to_str().unwrap()]),
        &["chunkCount"],
    );
    fails_with(
        &run(&["verify", "--manifest-file", "/nonexistent/manifest.json"]),
        &["/nonexistent/manifest.json"],
    );
}

#[test]
fn bad_verify_flags_are_refused() {
    let p = Published::new();
    let file = p.manifest_file();
    let file = file.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--manifest-file", file, "--concurrency", "0"],
            "concurrency",
        ),
        (vec!["--manifest-file", file, "--retries", "0"], "retries"),
        (
            vec!["--manifest-file", file, "--max-chunks", "0"],
            "max-chunks",
        ),
        (
            vec!["--manifest-file", file, "--max-chunks", "100000001"],
            "max-chunks",
        ),
        (
            vec!["--manifest-file", file, "--chunk-sample-seed", "3"],
            "chunk-sample",
        ),
        (
            vec!["--manifest-file", file, "--prefix", "images/"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["verify"];
        all.extend_from_slice(&args);
        fails_with(&run(&all), &[needle]);
    }
    fails_with(
        &run(&["--storage", &p.storage, "verify", "--manifest-file", file]),
        &["--manifest-file", "--storage"],
    );
    fails_with(
        &run(&["--storage", &p.storage, "verify"]),
        &["--prefix", "--manifest-key"],
    );
    fails_with(&run(&["verify", "--prefix", "images/"]), &["no storage"]);
    fails_with(&run(&["verify", "--header", "A: b"]), &["--manifest-url"]);
    // Fewer chunks allowed than the manifest has.
    fails_with(
        &run(&["verify", "--manifest-file", file, "--max-chunks", "10"]),
        &["chunkCount"],
    );
}

#[test]
fn a_manifest_altered_under_its_manifest_sha256_version_is_refused_before_any_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    patterned_image(&raw, COUNT * CHUNK, CHUNK, &[0, 1, 2, 5]);
    let root = dir.path().join("store");
    let storage = format!("fs:{}", root.display());
    let publish = |image: &Path| {
        json(&ok(run(&[
            "--storage",
            &storage,
            "publish",
            "--file",
            image.to_str().unwrap(),
            "--prefix",
            "images/disk/",
            "--compute-version",
            "manifest-sha256",
            "--publish-latest",
            "--chunk-size",
            &CHUNK.to_string(),
            "--json",
        ])))
    };
    let version = publish(&raw)["version"].as_str().unwrap().to_string();
    assert!(
        version.starts_with("mh1-") && version.len() == 68,
        "{version}"
    );
    let verify = |args: &[&str]| {
        let mut all = vec!["--storage", &storage, "verify"];
        all.extend_from_slice(args);
        run(&all)
    };
    ok(verify(&["--prefix", "images/disk/"]));

    // One digest edited, and no chunk left to fetch: the manifest alone is refused.
    let version_dir = root.join(format!("images/disk/{version}"));
    let path = version_dir.join("manifest.json");
    let mut m = manifest(&path);
    m["chunks"][3]["sha256"] = "0".repeat(64).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    std::fs::remove_dir_all(version_dir.join("chunks")).unwrap();
    let key = format!("images/disk/{version}/manifest.json");
    for out in [
        verify(&["--prefix", "images/disk/"]),
        verify(&["--manifest-key", &key]),
        run(&["verify", "--manifest-file", path.to_str().unwrap()]),
    ] {
        let all = fails_with(&out, &["does not match its version", &version]);
        assert!(!all.contains("bad chunk"), "{all}");
    }

    // A genuine manifest of another version put in its place is refused too.
    let other = dir.path().join("other.raw");
    patterned_image(&other, COUNT * CHUNK, CHUNK, &[0, 3]);
    let other_version = publish(&other)["version"].as_str().unwrap().to_string();
    let other_dir = root.join(format!("images/disk/{other_version}"));
    std::fs::copy(other_dir.join("manifest.json"), &path).unwrap();
    fails_with(
        &verify(&["--manifest-key", &key]),
        &["directory of version", &version],
    );
}
