//! `aero-host run CONFIG` through the binary: the example config, relative paths, overrides,
//! and bad configs refused with the file, key and line.

use crate::support::*;
use std::path::{Path, PathBuf};

fn small_image(dir: &Path) -> PathBuf {
    let raw = dir.join("disk.raw");
    patterned_image(&raw, 8 * 65536, 65536, &[0, 3, 7]);
    raw
}

fn run_config(path: &Path) -> std::process::Output {
    aero()
        .arg("run")
        .arg(path)
        .current_dir(path.parent().unwrap())
        .output()
        .unwrap()
}

const JOB: &str = r#"
[[publish]]
file = "disk.raw"
prefix = "images/disk/v1/"
chunk_size = 65536
"#;

#[test]
fn the_example_config_runs_from_a_copy() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = repo.join("config.example.toml");
    assert!(
        example.is_file(),
        "{} is missing: the example config is part of the product",
        example.display()
    );
    let work = tempfile::tempdir().unwrap();
    let example_text = std::fs::read_to_string(&example).unwrap();
    // Copy every file the example names relative to itself (e.g. samples/...).
    for line in example_text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(("file", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
            continue;
        };
        let rel = value.trim_matches('"');
        let src = repo.join(rel);
        assert!(src.is_file(), "the example names {rel}, which is missing");
        let dst = work.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
    let config = work.path().join("config.example.toml");
    std::fs::write(&config, &example_text).unwrap();
    let out = ok(aero()
        .args(["run", "config.example.toml", "--json"])
        .current_dir(work.path())
        .output()
        .unwrap());
    let lines = json_lines(&out);
    assert!(!lines.is_empty(), "{}", text(&out));
    for line in &lines {
        if line.get("bad_chunks").is_some() {
            assert_eq!(line["bad_chunks"].as_array().unwrap().len(), 0, "{line}");
        }
    }
    // Objects went under the copy, not the repository.
    assert!(
        files_under(work.path())
            .iter()
            .any(|f| f.ends_with("manifest.json")),
        "{:?}",
        files_under(work.path())
    );
}

#[test]
fn relative_paths_env_and_cli_overrides() {
    let work = tempfile::tempdir().unwrap();
    small_image(work.path());
    let config = write_config(
        work.path(),
        "c.toml",
        &format!("[storage]\ntype = \"fs\"\nroot = \"out\"\n{JOB}"),
    );
    // Run from elsewhere: paths are relative to the config.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = ok(aero()
        .arg("run")
        .arg(&config)
        .current_dir(elsewhere.path())
        .output()
        .unwrap());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified 8/8 chunks"),
        "{}",
        text(&out)
    );
    assert!(work
        .path()
        .join("out/images/disk/v1/manifest.json")
        .is_file());
    // AERO_BACKEND_ROOT overrides [storage] root.
    let other = work.path().join("other");
    ok(aero()
        .arg("run")
        .arg(&config)
        .env("AERO_BACKEND_ROOT", &other)
        .output()
        .unwrap());
    assert!(other.join("images/disk/v1/manifest.json").is_file());
    // --storage overrides the whole table.
    let third = work.path().join("third");
    ok(aero()
        .arg("--storage")
        .arg(format!("fs:{}", third.display()))
        .arg("run")
        .arg(&config)
        .output()
        .unwrap());
    assert!(third.join("images/disk/v1/manifest.json").is_file());
}

#[test]
fn a_rerun_repairs_a_replaced_chunk_before_verifying() {
    let work = tempfile::tempdir().unwrap();
    small_image(work.path());
    let config = write_config(
        work.path(),
        "c.toml",
        &format!("[storage]\ntype = \"fs\"\nroot = \"out\"\n{JOB}"),
    );
    ok(run_config(&config));
    // Damage a chunk with a new file (no recorded digest): the re-run repairs it.
    let chunk = work.path().join("out/images/disk/v1/chunks/00000003.bin");
    std::fs::remove_file(&chunk).unwrap();
    std::fs::write(&chunk, vec![9u8; 65536]).unwrap();
    let out = ok(aero()
        .args(["run", "--json"])
        .arg(&config)
        .output()
        .unwrap());
    let lines = json_lines(&out);
    assert_eq!(lines[0]["skipped_chunks"], 7, "{}", text(&out));
    assert_eq!(lines[0]["bytes_uploaded"], 65536);
}

/// Writes `text` as a config next to a small image and runs it; returns stderr.
fn bad_config(text: &str, needles: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    small_image(work.path());
    let config = write_config(work.path(), "bad.toml", text);
    let out = run_config(&config);
    let err = fails_with(&out, needles);
    assert!(
        !work.path().join("out/images").exists(),
        "nothing is published from a bad config"
    );
    err
}

#[test]
fn unknown_keys_name_file_key_and_line() {
    bad_config(
        &format!("[storage]\ntype = \"fs\"\nroot = \"out\"\n{JOB}chunk_sise = 4096\n"),
        &["bad.toml", "line 9", "chunk_sise"],
    );
    bad_config(
        "[storage]\ntype = \"fs\"\nroot = \"out\"\n\n[sevre]\nport = 1\n",
        &["bad.toml", "line 5", "sevre"],
    );
    // A second entry's unknown key is found on its own line.
    bad_config(
        &format!(
            "[storage]\ntype = \"fs\"\nroot = \"out\"\n{JOB}\n[[publish]]\nfile = \"disk.raw\"\nprefx = \"images/x/v1/\"\n"
        ),
        &["bad.toml", "line 12", "prefx"],
    );
    // Storage settings the backend does not know.
    bad_config(
        &format!("[storage]\ntype = \"fs\"\nrot = \"out\"\n{JOB}"),
        &["rot", "fs"],
    );
}

#[test]
fn bad_values_are_refused() {
    let head = "[storage]\ntype = \"fs\"\nroot = \"out\"\n";
    bad_config(
        &format!("{head}{JOB}concurrency = \"many\"\n"),
        &["bad.toml", "line 9", "concurrency"],
    );
    bad_config(
        &format!("{head}{JOB}checksum = \"md5\"\n"),
        &["bad.toml", "line 9", "checksum", "md5"],
    );
    bad_config(
        &format!("{head}{JOB}verify = \"yes\"\n"),
        &["bad.toml", "line 9", "verify"],
    );
    bad_config(
        &format!("{head}[[publish]]\nfile = \"disk.raw\"\nprefix = \"images/disk/v1/\"\nchunk_size = 1000\n"),
        &["bad.toml", "entry 1", "chunk-size", "512"],
    );
    bad_config(
        &format!("{head}{JOB}concurrency = 0\n"),
        &["bad.toml", "concurrency"],
    );
    bad_config(
        &format!("{head}{JOB}retries = 0\n"),
        &["bad.toml", "retries"],
    );
    bad_config(
        &format!("{head}{JOB}cache_control_latest = \"max-age=60\"\n"),
        &["bad.toml", "no-transform"],
    );
    bad_config(
        "[storage]\ntype = \"fs\"\nroot = [\"out\"]\n",
        &["bad.toml", "line 3", "root"],
    );
    bad_config(
        "[storage]\ntype = \"ftp\"\n",
        &["ftp", "fs", "s3", "memory"],
    );
    bad_config("[storage]\nroot = \"out\"\n", &["bad.toml", "type"]);
    bad_config(
        &format!("{head}[[publish]]\nprefix = \"images/disk/v1/\"\n"),
        &["bad.toml", "file"],
    );
    bad_config("this is not toml\n", &["bad.toml", "line 1"]);
    bad_config(
        &format!("{head}[[publish]]\nfile = \"missing.raw\"\nprefix = \"images/disk/v1/\"\n"),
        &["missing.raw"],
    );
}

#[test]
fn missing_storage_or_config_is_an_error() {
    bad_config(JOB, &["no storage", "--storage", "[storage]"]);
    let out = run(&["run", "/nonexistent/aero.toml"]);
    fails_with(&out, &["/nonexistent/aero.toml"]);
}
