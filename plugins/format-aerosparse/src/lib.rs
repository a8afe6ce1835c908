//! AeroSparse v1 (`AEROSPAR`) disk images: a 64-byte header, a table of physical block
//! offsets and a data region of fixed-size blocks. Reading, and writing with
//! [`write_aerosparse`].

mod disk;
mod header;
mod writer;

pub use writer::{write_aerosparse, WriteSummary};

use aero_plugin_api::{
    register_format, ByteSource, Capabilities, DiskFormat, DiskWriter, OpenContext, ProbeInput,
    ProbeResult, Result, VirtualDisk,
};
use std::path::Path;
use std::sync::Arc;

/// The AeroSparse format plugin.
#[derive(Default)]
pub struct AeroSparseFormat;

register_format!(AeroSparseFormat);

impl DiskFormat for AeroSparseFormat {
    fn name(&self) -> &str {
        "aerosparse"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ZERO_EXTENTS | Capabilities::WRITE
    }

    fn writer(&self) -> Option<&dyn DiskWriter> {
        Some(self)
    }

    fn aliases(&self) -> &[&str] {
        &["aerospar"]
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The magic. The header (version included) is checked by `open`, so a damaged image is
    /// refused as AeroSparse instead of being read as raw.
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
        _ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>> {
        Ok(Arc::new(disk::SparseDisk::open(source)?))
    }
}

/// Block size of the images [`DiskWriter::write`] makes (64 KiB).
pub const WRITER_BLOCK_SIZE: u32 = 64 * 1024;

impl DiskWriter for AeroSparseFormat {
    fn write(&self, disk: &dyn VirtualDisk, out: &Path) -> Result<aero_plugin_api::WriteSummary> {
        let summary = write_aerosparse(disk, out, WRITER_BLOCK_SIZE)?;
        Ok(aero_plugin_api::WriteSummary::new(
            summary.capacity,
            summary.allocated_blocks * u64::from(summary.block_size),
        ))
    }
}
