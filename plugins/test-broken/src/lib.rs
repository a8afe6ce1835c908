//! What the deliberately broken test plugins share: a raw disk with a hook run on every read.

use aero_plugin_api::{ByteSource, DiskInfo, Error, Extent, ExtentKind, Result, VirtualDisk};
use std::sync::Arc;

/// A raw disk whose reads pass through `hook(offset, bytes)` before they are returned.
pub struct HookedDisk {
    /// The image's bytes.
    pub source: Arc<dyn ByteSource>,
    /// Runs on every successful read.
    pub hook: fn(u64, &mut [u8]),
}

impl HookedDisk {
    fn check(&self, offset: u64, length: u64) -> Result<()> {
        match offset.checked_add(length) {
            Some(end) if end <= self.source.len() => Ok(()),
            _ => Err(Error::out_of_bounds(offset, length, self.source.len())),
        }
    }
}

impl VirtualDisk for HookedDisk {
    fn capacity(&self) -> u64 {
        self.source.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.source.read_at(offset, buf)?;
        (self.hook)(offset, buf);
        Ok(())
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.check(offset, length)?;
        Ok((length > 0)
            .then_some(Extent::new(offset, length, ExtentKind::Data))
            .into_iter()
            .collect())
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::default()
    }
}
