//! `aero-host plugins ...` and `--plugin` with real shared libraries, through the binary.

use aero_plugin_testkit::Fixtures;
use aero_plugin_testkit::{build_plugin_library, build_workspace_binary};
use std::path::PathBuf;
use std::process::{Command, Output};

fn aero(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aero-host"))
        .args(args)
        .output()
        .expect("running aero-host")
}

/// `aero-host plugins test` runs the suite through `aero-plugin-check`, found beside it.
fn checker() {
    build_workspace_binary(
        env!("CARGO_MANIFEST_DIR"),
        "aero-plugin-testkit",
        "aero-plugin-check",
    )
    .expect("building aero-plugin-check");
}

fn library(package: &str) -> PathBuf {
    build_plugin_library(env!("CARGO_MANIFEST_DIR"), package).expect("building the plugin library")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn closing_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn lists_built_ins_and_a_loaded_library_with_its_origin() {
    let vmdk = library("format-vmdk");
    let out = aero(&[
        "--plugin",
        vmdk.to_str().unwrap(),
        "plugins",
        "list",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let find = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    for builtin in ["raw", "qcow2", "vhd", "aerosparse", "fs", "s3", "memory"] {
        assert_eq!(find(builtin)["origin"], "builtin");
    }
    let vmdk_row = find("vmdk");
    assert_eq!(vmdk_row["origin"], vmdk.to_str().unwrap());
    assert_eq!(vmdk_row["api_version"], 1);
}

#[test]
fn conformance_passes_for_the_vmdk_library() {
    let fixtures = Fixtures::builtin();
    let vmdk = library("format-vmdk");
    checker();
    let dir = fixtures.dir().to_str().unwrap().to_string();
    let out = aero(&[
        "--plugin",
        vmdk.to_str().unwrap(),
        "plugins",
        "test",
        "--fixtures",
        &dir,
    ]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    let last = closing_line(&out);
    assert!(last.ends_with("passed, 0 failed"), "closing line: {last}");
    assert!(
        output.contains("ok   sparse.vmdk") && output.contains("ok   stream.vmdk"),
        "{output}"
    );
}

#[test]
fn conformance_fails_for_a_plugin_returning_wrong_bytes() {
    let fixtures = Fixtures::builtin();
    let wrong = library("test-plugin-wrong-bytes");
    checker();
    let dir = fixtures.dir().to_str().unwrap().to_string();
    let out = aero(&[
        "--plugin",
        wrong.to_str().unwrap(),
        "plugins",
        "test",
        "--fixtures",
        &dir,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let last = closing_line(&out);
    assert!(
        last.contains("passed, ") && !last.ends_with(" 0 failed"),
        "closing line: {last}"
    );
    assert!(text(&out).contains("FAIL"));
}

#[test]
fn a_library_with_another_abi_version_is_refused_by_name() {
    let bad = library("test-plugin-bad-abi");
    let out = aero(&["--plugin", bad.to_str().unwrap(), "plugins", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("99") && err.contains("version 1"),
        "{err}"
    );
}

#[test]
fn a_second_library_with_the_same_name_is_an_error() {
    let vmdk = library("format-vmdk");
    let path = vmdk.to_str().unwrap();
    let out = aero(&["--plugin", path, "--plugin", path, "plugins", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already provides"),
        "{}",
        text(&out)
    );
}

#[test]
fn plugins_test_without_a_plugin_says_what_to_pass() {
    let out = aero(&["plugins", "test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--plugin"));
}

#[test]
fn a_config_loads_a_library_plugin_and_publishes_its_format() {
    let fixtures = Fixtures::builtin();
    let vmdk = library("format-vmdk");
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    std::fs::copy(&vmdk, plugins_dir.join("libformat_vmdk.so")).unwrap();
    let config = dir.path().join("aero.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"fs\"\nroot = \"store\"\n\n[plugins]\ndir = \"plugins.d\"\n\n\
             [[publish]]\nfile = \"{}\"\nprefix = \"images/\"\nimage_id = \"vm\"\n\
             compute_version = \"sha256\"\nverify = true\n",
            fixtures.dir().join("stream.vmdk").display()
        ),
    )
    .unwrap();
    let out = aero(&["run", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = fixtures
        .entries()
        .iter()
        .find(|f| f.name == "stream.vmdk")
        .and_then(|f| f.sha256.clone())
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(summary["version"], format!("sha256-{expected}"));
    assert!(dir
        .path()
        .join("store/images/vm")
        .join(summary["version"].as_str().unwrap())
        .join("manifest.json")
        .exists());

    // Without the plugin, the same image is not a vmdk to aero-host: it reads as raw.
    let out = aero(&[
        "inspect",
        fixtures.dir().join("stream.vmdk").to_str().unwrap(),
        "--json",
    ]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format"], "raw");
}
