//! `aero-host convert`: the guest-visible bytes as a sparse raw file or an image of any format
//! plugin that can write (AeroSparse).

use crate::cli::ConvertArgs;
use aero_chunked::sink::{write_sparse_raw, Converted};
use aero_plugin_api::VirtualDisk;
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// `aero-host convert`.
pub fn command(args: ConvertArgs, libs: &LibrarySelection) -> Result<ExitCode> {
    let plugins = PluginSet::load(libs)?;
    let opened = super::open_args(&args.source, &plugins)?;
    let converted =
        convert(&plugins, opened.disk.as_ref(), &args.out, &args.to).with_context(|| {
            format!(
                "converting {} to {}",
                args.source.image.display(),
                args.out.display()
            )
        })?;
    eprintln!(
        "wrote {} ({} guest bytes, {} data bytes)",
        args.out.display(),
        converted.virtual_size,
        converted.written
    );
    Ok(ExitCode::SUCCESS)
}

/// Converts `disk` to `out`, writing a temporary file beside it and renaming it at the end,
/// so a failure never leaves a file that looks complete. Like `qemu-img convert` and `cp`, it
/// leaves flushing to the page cache (run `sync` for durability against power loss).
fn convert(
    plugins: &PluginSet,
    disk: &dyn VirtualDisk,
    out: &Path,
    target: &str,
) -> Result<Converted> {
    if target == "raw" {
        return Ok(write_sparse_raw(disk, out)?);
    }
    let format = plugins
        .formats()
        .require(target)
        .map_err(|e| anyhow!("{e}"))?;
    let writer = format
        .writer()
        .ok_or_else(|| anyhow!("format '{target}' cannot write images"))?;
    let summary = writer.write(disk, out).map_err(|e| anyhow!("{e}"))?;
    Ok(Converted {
        virtual_size: summary.virtual_size,
        written: summary.data_bytes,
    })
}
