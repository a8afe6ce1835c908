//! `aero-host serve`: the HTTP server over the storage given by `--storage`.

use aero_plugin_host::LibrarySelection;
use anyhow::Result;
use std::process::ExitCode;

/// `aero-host serve`.
pub fn command(
    args: crate::serve::ServeArgs,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    crate::serve::command(args, cli_storage, libs)
}
