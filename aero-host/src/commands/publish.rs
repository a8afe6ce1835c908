//! `aero-host publish`.

use super::{publish_one, storage_for, verify_published};
use crate::cli::PublishCommand;
use crate::config::pick_storage;
use crate::output::{print_report, print_summary};
use crate::runtime::runtime;
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::Result;
use std::process::ExitCode;
use std::sync::Arc;

/// `aero-host publish`: one image, then (with `--verify`) every chunk checked.
pub fn command(
    cmd: PublishCommand,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let plugins = PluginSet::load(libs)?;
    let spec = pick_storage(cli_storage, cmd.s3.spec()?, None)?;
    let storage = storage_for(&plugins, &spec, cmd.args.retries)?;
    runtime()?.block_on(async {
        let summary = publish_one(&plugins, Arc::clone(&storage), &cmd.args, cmd.json).await?;
        print_summary(&summary, cmd.json)?;
        if cmd.verify {
            let report = verify_published(&storage, &summary, None, &cmd.args).await?;
            print_report(&report, cmd.json)?;
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
