//! Raw disk images: the file's bytes are the guest-visible bytes. Detection falls back to raw.

use aero_plugin_api::{
    register_format, ByteSource, Capabilities, DiskFormat, DiskInfo, Error, Extent, ExtentKind,
    OpenContext, ProbeInput, ProbeResult, Result, VirtualDisk,
};
use std::sync::Arc;

/// The raw format plugin.
#[derive(Default)]
pub struct RawFormat;

register_format!(RawFormat);

impl DiskFormat for RawFormat {
    fn name(&self) -> &str {
        "raw"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ZERO_EXTENTS
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn probe(&self, _input: &ProbeInput<'_>) -> ProbeResult {
        ProbeResult::Fallback
    }

    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        _ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>> {
        Ok(Arc::new(RawDisk { source }))
    }
}

/// A raw image: reads go straight to the source.
struct RawDisk {
    source: Arc<dyn ByteSource>,
}

impl VirtualDisk for RawDisk {
    fn capacity(&self) -> u64 {
        self.source.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let capacity = self.capacity();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > capacity)
        {
            return Err(Error::out_of_bounds(offset, buf.len() as u64, capacity));
        }
        self.source.read_at(offset, buf)
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let capacity = self.capacity();
        if offset.checked_add(length).is_none_or(|end| end > capacity) {
            return Err(Error::out_of_bounds(offset, length, capacity));
        }
        if length == 0 {
            return Ok(Vec::new());
        }
        // Holes of a sparse file are known zeros; otherwise everything is data.
        Ok(self
            .source
            .block_status(offset, length)
            .unwrap_or_else(|| vec![Extent::new(offset, length, ExtentKind::Data)]))
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::default()
    }
}
