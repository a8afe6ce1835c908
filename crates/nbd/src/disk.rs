//! A local image in any format the plugins read, exported as its guest-visible bytes; block
//! status comes from the format's own extents.

use crate::export::{check_range, merge_extents, Export, ExportError};
use aero_plugin_api::{Extent, VirtualDisk};
use async_trait::async_trait;
use std::sync::Arc;

/// An opened [`VirtualDisk`] as an export; reads run on the blocking pool.
pub struct DiskExport {
    disk: Arc<dyn VirtualDisk>,
}

impl DiskExport {
    /// Exports `disk`.
    pub fn new(disk: Arc<dyn VirtualDisk>) -> Self {
        DiskExport { disk }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&dyn VirtualDisk) -> aero_plugin_api::Result<T> + Send + 'static,
    ) -> Result<T, ExportError> {
        let disk = Arc::clone(&self.disk);
        tokio::task::spawn_blocking(move || job(&*disk))
            .await
            .map_err(|e| ExportError::Read(format!("disk task failed: {e}")))?
            .map_err(|e| ExportError::Read(e.to_string()))
    }
}

#[async_trait]
impl Export for DiskExport {
    fn size(&self) -> u64 {
        self.disk.capacity()
    }

    async fn read(&self, offset: u64, length: usize) -> Result<Vec<u8>, ExportError> {
        check_range(offset, length as u64, self.size())?;
        self.blocking(move |disk| {
            let mut buf = vec![0; length];
            disk.read_at(offset, &mut buf).map(|()| buf)
        })
        .await
    }

    async fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>, ExportError> {
        check_range(offset, length, self.size())?;
        let extents = self
            .blocking(move |disk| disk.block_status(offset, length))
            .await?;
        Ok(merge_extents(extents))
    }

    /// A local file needs no prefetch: the page cache does it.
    fn prefetch(&self, _offset: u64, _length: u64) {}
}
