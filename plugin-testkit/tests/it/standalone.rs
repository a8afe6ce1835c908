//! A plugin crate outside this workspace runs the conformance suite: the VMDK template,
//! copied to a temporary directory as a crate of its own with path dependencies on
//! `aero-plugin-api` and `aero-plugin-testkit`, builds and passes its conformance test.

use aero_plugin_testkit::{Fixtures, FIXTURES_ENV};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package name of the copy (another name than the workspace's own `format-vmdk`, so
/// the shared target directory keeps both libraries).
const PACKAGE: &str = "format-vmdk-template";

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The target directory of the running test executable (`<target>/<profile>/deps/<exe>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

#[test]
fn the_vmdk_template_passes_the_suite_as_a_crate_outside_the_workspace() {
    let fixtures = Fixtures::builtin();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::temp_dir().join(format!("aero-standalone-plugin-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let template = workspace.join("plugins/format-vmdk");
    copy_dir(&template.join("src"), &dir.join("src"));
    copy_dir(&template.join("tests"), &dir.join("tests"));
    let library = dir.join("tests/library.rs");
    let text = fs::read_to_string(&library).unwrap();
    assert!(
        text.contains("\"format-vmdk\""),
        "the template builds itself by package name"
    );
    fs::write(
        &library,
        text.replace("\"format-vmdk\"", &format!("\"{PACKAGE}\"")),
    )
    .unwrap();
    fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{PACKAGE}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
aero-plugin-api = {{ path = "{api}" }}
flate2 = "1"

[dev-dependencies]
aero-plugin-testkit = {{ path = "{testkit}" }}
sha2 = "0.10"
hex = "0.4"

[workspace]

# As in the workspace, so the shared target directory reuses these builds.
[profile.dev.package.sha2]
opt-level = 3
[profile.dev.package.flate2]
opt-level = 3
[profile.dev.package.miniz_oxide]
opt-level = 3
"#,
            api = workspace.join("plugin-api").display(),
            testkit = workspace.join("plugin-testkit").display(),
        ),
    )
    .unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&dir)
        .args(["test", "--offline", "--test", "library"])
        .arg("--target-dir")
        .arg(target_dir())
        .args(["--", "--exact", "passes_the_conformance_suite_as_a_library"])
        .env(FIXTURES_ENV, fixtures.dir())
        .output()
        .expect("running cargo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("test passes_the_conformance_suite_as_a_library ... ok"),
        "{text}"
    );
    let _ = fs::remove_dir_all(&dir);
}
