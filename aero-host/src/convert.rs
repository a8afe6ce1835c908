//! `aero-host convert`: the guest-visible bytes as a sparse raw file or an AeroSparse image.

use aero_chunked::sink::{write_sparse_raw, Converted};
use aero_plugin_api::VirtualDisk;
use anyhow::{anyhow, Result};
use std::path::Path;

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A raw file; zero extents become holes.
    Raw,
    /// An AeroSparse v1 image.
    Aerosparse,
}

/// Converts `disk` to `out`, writing a temporary file beside it and renaming it at the end,
/// so a failure never leaves a file that looks complete. Like `qemu-img convert` and `cp`, it
/// leaves flushing to the page cache (run `sync` for durability against power loss).
pub fn convert(disk: &dyn VirtualDisk, out: &Path, target: Target) -> Result<Converted> {
    match target {
        Target::Raw => Ok(write_sparse_raw(disk, out)?),
        Target::Aerosparse => {
            let summary = format_aerosparse::write_aerosparse(disk, out, 64 * 1024)
                .map_err(|e| anyhow!("{e}"))?;
            Ok(Converted {
                virtual_size: disk.capacity(),
                written: summary.allocated_blocks * u64::from(summary.block_size),
            })
        }
    }
}
