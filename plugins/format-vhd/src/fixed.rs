//! Fixed VHDs: the guest bytes are stored as they are, followed by the footer.

use crate::check_range;
use aero_plugin_api::{ByteSource, DiskInfo, Extent, ExtentKind, Result, VirtualDisk};
use std::sync::Arc;

/// A fixed disk: guest offset `x` is file offset `data_start + x`.
pub(crate) struct FixedDisk {
    pub source: Arc<dyn ByteSource>,
    pub data_start: u64,
    pub capacity: u64,
}

impl VirtualDisk for FixedDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        // In range: data_start + capacity lies within the file, checked at open.
        self.source.read_at(self.data_start + offset, buf)
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        check_range(offset, length, self.capacity)?;
        Ok((length > 0)
            .then_some(Extent::new(offset, length, ExtentKind::Data))
            .into_iter()
            .collect())
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::default()
    }
}
