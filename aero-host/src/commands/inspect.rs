//! `aero-host inspect`: what an image is.

use crate::cli::InspectArgs;
use crate::output::out;
use aero_plugin_api::ExtentKind;
use aero_plugin_host::{LibrarySelection, OpenedDisk, PluginSet};
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::process::ExitCode;

/// `aero-host inspect`.
pub fn command(args: InspectArgs, libs: &LibrarySelection) -> Result<ExitCode> {
    let opened = super::open_args(&args.source, &PluginSet::load(libs)?)?;
    let inspection =
        inspect(&opened).with_context(|| format!("inspecting {}", args.source.image.display()))?;
    if args.json {
        out(serde_json::to_string_pretty(&inspection)?)?;
    } else {
        out(&inspection)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The facts `inspect` prints (also its `--json` shape).
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Format plugin name.
    pub format: String,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Bytes in data extents (the rest is known zeros).
    pub allocated_bytes: u64,
    /// Cluster or block size, when the format has one.
    pub cluster_size: Option<u64>,
    /// Backing files, nearest first.
    pub backing_chain: Vec<String>,
    /// The plugin that read it, `name version`.
    pub plugin: String,
}

/// Inspects an opened disk.
fn inspect(opened: &OpenedDisk) -> Result<Inspection> {
    let disk = &opened.disk;
    let capacity = disk.capacity();
    let extents = disk.block_status(0, capacity).map_err(|e| anyhow!("{e}"))?;
    let allocated_bytes = extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| e.length)
        .sum();
    let info = disk.info();
    Ok(Inspection {
        format: opened.format.name().to_string(),
        virtual_size: capacity,
        allocated_bytes,
        cluster_size: info.cluster_size,
        backing_chain: info.backing_chain,
        plugin: format!("{} {}", opened.format.name(), opened.format.version()),
    })
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "format:          {}", self.format)?;
        writeln!(f, "virtual size:    {} bytes", self.virtual_size)?;
        writeln!(f, "allocated bytes: {}", self.allocated_bytes)?;
        match self.cluster_size {
            Some(c) => writeln!(f, "cluster size:    {c} bytes")?,
            None => writeln!(f, "cluster size:    -")?,
        }
        if self.backing_chain.is_empty() {
            writeln!(f, "backing chain:   none")?;
        } else {
            writeln!(f, "backing chain:   {}", self.backing_chain.join(" -> "))?;
        }
        write!(f, "plugin:          {}", self.plugin)
    }
}
