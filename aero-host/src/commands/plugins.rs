//! `aero-host plugins list` and `plugins test`.

use crate::cli::PluginsCommand;
use crate::output::out;
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `aero-host plugins ...`.
pub fn command(cmd: PluginsCommand, libs: &LibrarySelection) -> Result<ExitCode> {
    match cmd {
        PluginsCommand::List { json } => {
            let rows = PluginSet::load(libs)?.rows();
            if json {
                out(serde_json::to_string_pretty(&rows)?)?;
            } else {
                for r in rows {
                    out(format_args!(
                        "{:<8} {:<12} {:<8} api v{} {:<10} {}",
                        r.kind,
                        r.name,
                        r.version,
                        r.api_version,
                        r.origin,
                        r.capabilities.join(",")
                    ))?;
                }
            }
        }
        PluginsCommand::Test { fixtures } => return test_plugins(&libs.paths, fixtures.as_deref()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `aero-host plugins test`: the conformance suite against every library plugin, run by
/// `aero-plugin-check` (beside this executable, else on `PATH`), which counts allocations for
/// the allocation bound. Each library is tested on its own, so one that shares a built-in's
/// name can be tested too.
fn test_plugins(libraries: &[PathBuf], fixtures: Option<&Path>) -> Result<ExitCode> {
    const CHECKER: &str = "aero-plugin-check";
    if libraries.is_empty() {
        bail!("no plugin to test: pass --plugin PATH (a format plugin library)");
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(CHECKER)))
        .filter(|path| path.is_file());
    let mut command = std::process::Command::new(beside.as_deref().unwrap_or(Path::new(CHECKER)));
    if let Some(dir) = fixtures {
        command.arg("--fixtures").arg(dir);
    }
    let output = command
        .args(libraries)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| {
            format!(
                "running {CHECKER}, which plugins test needs beside aero-host or on PATH \
                 (install it with: cargo install --path plugin-testkit --bin {CHECKER})"
            )
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(1) => Ok(ExitCode::FAILURE),
        Some(2) => Err(anyhow!("{}", stderr.trim_end())),
        _ => Err(anyhow!(
            "{CHECKER} failed ({}): {}",
            output.status,
            stderr.trim_end()
        )),
    }
}
