//! Building a workspace's plugin library or binary from a test, so tests use the real thing.

use aero_plugin_api::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the `cdylib` of workspace package `package` with `cargo build -p`, into the target
/// directory and profile of the running test executable, and returns the library's path.
///
/// Meant for a plugin's own tests: `build_plugin_library(env!("CARGO_MANIFEST_DIR"), "format-x")`.
/// Cargo's own locking serialises concurrent calls.
pub fn build_plugin_library(manifest_dir: &str, package: &str) -> Result<PathBuf> {
    let profile_dir = cargo_build(manifest_dir, package, &["--lib"])?;
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = profile_dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::io(format!(
            "building plugin {package}: cargo succeeded but {} does not exist (is the crate a cdylib?)",
            path.display()
        )))
    }
}

/// Builds the binary `bin` of workspace package `package` like [`build_plugin_library`] and
/// returns its path, beside the test executables' own binaries (where `aero-host` finds
/// `aero-plugin-check`).
pub fn build_workspace_binary(manifest_dir: &str, package: &str, bin: &str) -> Result<PathBuf> {
    let profile_dir = cargo_build(manifest_dir, package, &["--bin", bin])?;
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::io(format!(
            "building {bin}: cargo succeeded but {} does not exist",
            path.display()
        )))
    }
}

/// Runs `cargo build -p package <extra>` into the target directory and profile of the running
/// test executable; returns the profile directory.
fn cargo_build(manifest_dir: &str, package: &str, extra: &[&str]) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::io(format!(
            "building plugin {package}: locating the test executable: {e}"
        ))
    })?;
    // A test executable lives in <target>/<profile>/deps/.
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        Error::io(format!(
            "building plugin {package}: {} is not in a cargo target directory",
            exe.display()
        ))
    })?;
    let target_dir = profile_dir.parent().ok_or_else(|| {
        Error::io(format!(
            "building plugin {package}: {} has no parent",
            profile_dir.display()
        ))
    })?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| if n == "debug" { "dev" } else { n })
        .unwrap_or("dev");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(manifest_dir)
        .args(["build", "--quiet", "-p", package])
        .args(extra)
        .args(["--profile", profile, "--target-dir"])
        .arg(target_dir)
        .output()
        .map_err(|e| Error::io(format!("building plugin {package}: running cargo: {e}")))?;
    if !output.status.success() {
        return Err(Error::io(format!(
            "building plugin {package}: cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(profile_dir.to_path_buf())
}
