//! VMDK hosted sparse extents (monolithicSparse and streamOptimized) as an aero-host format
//! plugin shipped as a shared library.
//!
//! Everything here is ordinary safe Rust against the `aero-plugin-api` traits; the last line
//! exports it over the plugin ABI.

mod descriptor;
mod disk;
mod grain;
mod header;

use aero_plugin_api::{
    export_format_plugin, ByteSource, Capabilities, DiskFormat, OpenContext, ProbeInput,
    ProbeResult, Result, VirtualDisk,
};
use std::sync::Arc;

/// The VMDK format plugin.
#[derive(Default)]
pub struct VmdkFormat;

impl DiskFormat for VmdkFormat {
    fn name(&self) -> &str {
        "vmdk"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ZERO_EXTENTS | Capabilities::BACKING_FILES
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The `KDMV` magic. The header (version included) is checked by `open`, so a damaged
    /// sparse extent is refused as VMDK instead of being read as raw.
    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
        if input.head.starts_with(header::MAGIC) {
            ProbeResult::Match
        } else {
            ProbeResult::NoMatch
        }
    }

    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>> {
        Ok(Arc::new(disk::VmdkDisk::open(source, ctx)?))
    }
}

export_format_plugin!(VmdkFormat);
