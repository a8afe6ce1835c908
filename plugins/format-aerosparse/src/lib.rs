//! AeroSparse v1 (`AEROSPAR`) disk images: a 64-byte header, a table of physical block
//! offsets and a data region of fixed-size blocks. Reading, and writing with
//! [`write_aerosparse`].

mod disk;
mod header;
mod writer;

pub use writer::{write_aerosparse, WriteSummary};

use aero_plugin_api::{
    register_format, ByteSource, DiskFormat, OpenContext, ProbeInput, ProbeResult, Result,
    VirtualDisk,
};
use std::sync::Arc;

/// The AeroSparse format plugin.
#[derive(Default)]
pub struct AeroSparseFormat;

register_format!(AeroSparseFormat);

impl DiskFormat for AeroSparseFormat {
    fn name(&self) -> &str {
        "aerosparse"
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
