//! `aero-host inspect` and `convert` on every qemu-made fixture, through the binary.

use aero_plugin_testkit::Fixtures;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

fn aero(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aero-host"))
        .args(args)
        .output()
        .expect("running aero-host")
}

fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Fixtures the built-in plugins read (VMDK is a library plugin, tested on its own).
fn builtin_fixtures(fixtures: &Fixtures) -> Vec<(String, String, u64)> {
    fixtures
        .entries()
        .iter()
        .filter(|f| f.qemu_format != "vmdk")
        .filter_map(|f| Some((f.name.clone(), f.sha256.clone()?, f.virtual_size?)))
        .collect()
}

#[test]
fn every_fixture_converts_to_the_expected_bytes() {
    let fixtures = Fixtures::builtin();
    let out_dir = tempfile::tempdir().unwrap();
    let cases = builtin_fixtures(&fixtures);
    assert!(
        cases.len() >= 14,
        "expected the full fixture set, got {cases:?}"
    );
    for (name, sha, size) in cases {
        let image = fixtures.dir().join(&name);
        let out = out_dir.path().join(format!("{name}.raw"));
        let result = aero(&[
            "convert",
            image.to_str().unwrap(),
            out.to_str().unwrap(),
            "--allow-backing",
        ]);
        assert!(result.status.success(), "{name}: {}", stderr(&result));
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size, "{name}");
        assert_eq!(sha256_file(&out), sha, "{name}");
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn zero_extents_become_holes() {
    let fixtures = Fixtures::builtin();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("v3.raw");
    let image = fixtures.dir().join("v3.qcow2");
    let result = aero(&["convert", image.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", stderr(&result));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&out).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "a 64 MiB image with ~1 MiB of data should be sparse: {} bytes allocated",
        meta.blocks() * 512
    );
}

#[test]
fn aerosparse_output_reads_back_as_the_same_disk() {
    let fixtures = Fixtures::builtin();
    let dir = tempfile::tempdir().unwrap();
    let sparse = dir.path().join("v3.aerosparse");
    let raw = dir.path().join("back.raw");
    let image = fixtures.dir().join("v3.qcow2");
    let to_sparse = aero(&[
        "convert",
        image.to_str().unwrap(),
        sparse.to_str().unwrap(),
        "--to",
        "aerosparse",
    ]);
    assert!(to_sparse.status.success(), "{}", stderr(&to_sparse));
    let info = aero(&["inspect", sparse.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "aerosparse");
    let back = aero(&["convert", sparse.to_str().unwrap(), raw.to_str().unwrap()]);
    assert!(back.status.success(), "{}", stderr(&back));
    let expected = fixtures
        .entries()
        .iter()
        .find(|f| f.name == "v3.qcow2")
        .and_then(|f| f.sha256.clone())
        .unwrap();
    assert_eq!(sha256_file(&raw), expected);
}

#[test]
fn inspect_reports_format_sizes_and_the_backing_chain() {
    let fixtures = Fixtures::builtin();
    let overlay = fixtures.dir().join("overlay.qcow2");
    let out = aero(&[
        "inspect",
        overlay.to_str().unwrap(),
        "--allow-backing",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual_size"], 64 * 1024 * 1024);
    assert_eq!(info["cluster_size"], 65536);
    let chain = info["backing_chain"].as_array().unwrap();
    assert_eq!(chain.len(), 1);
    assert!(chain[0].as_str().unwrap().ends_with("base.qcow2"));
    let allocated = info["allocated_bytes"].as_u64().unwrap();
    assert!(allocated > 0 && allocated < 64 * 1024 * 1024, "{allocated}");
    assert!(info["plugin"].as_str().unwrap().starts_with("qcow2 "));

    let vhd = fixtures.dir().join("dynamic.vhd");
    let out = aero(&["inspect", vhd.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("format:          vhd"), "{text}");
    assert!(text.contains("backing chain:   none"), "{text}");
}

#[test]
fn bad_images_fail_cleanly_and_leave_no_output() {
    let fixtures = Fixtures::builtin();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.raw");
    let overlay = fixtures.dir().join("overlay.qcow2");
    let result = aero(&["convert", overlay.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(
        err.contains("overlay.qcow2") && err.contains("--allow-backing"),
        "{err}"
    );

    let truncated = fixtures.dir().join("truncated.qcow2");
    let result = aero(&[
        "convert",
        truncated.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(
        err.contains("truncated.qcow2") && err.contains("past the end"),
        "{err}"
    );

    let result = aero(&["inspect", "/nonexistent/disk.qcow2"]);
    assert!(!result.status.success());
    assert!(stderr(&result).contains("/nonexistent/disk.qcow2"));

    let result = aero(&[
        "convert",
        truncated.to_str().unwrap(),
        out.to_str().unwrap(),
        "--format",
        "vmdk",
    ]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("unknown format 'vmdk'"),
        "{}",
        stderr(&result)
    );

    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "failed conversions left {leftovers:?}"
    );
}
