//! What the server exports: a read-only disk of a fixed size that reads into a buffer, says
//! which ranges are known zeros, and takes prefetch hints. The protocol knows nothing else of
//! where the bytes come from.

use aero_plugin_api::{Extent, ExtentKind};
use async_trait::async_trait;

/// Why a read or a block status failed; the client sees `EIO` (or `EINVAL` for
/// [`ExportError::OutOfRange`]) and the message in a structured error reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    /// The range is not inside the export.
    #[error("range {offset}+{length} is outside the export of {size} bytes")]
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Length.
        length: u64,
        /// The export's size.
        size: u64,
    },
    /// The bytes could not be read (or failed verification) after retries.
    #[error("{0}")]
    Read(String),
}

/// A read-only disk behind an NBD export.
#[async_trait]
pub trait Export: Send + Sync + 'static {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// The `length` bytes at `offset`, all of them checked: an error, never a byte that
    /// is not the image's.
    async fn read(&self, offset: u64, length: usize) -> Result<Vec<u8>, ExportError>;

    /// Extents covering `offset..offset + length` in order, zero extents where the bytes are
    /// known zeros (holes).
    async fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>, ExportError>;

    /// A hint that `offset..offset + length` will be read soon (`NBD_CMD_CACHE`).
    fn prefetch(&self, offset: u64, length: u64);
}

/// Checks that `offset..offset + length` lies inside an export of `size` bytes.
pub fn check_range(offset: u64, length: u64, size: u64) -> Result<(), ExportError> {
    match offset.checked_add(length) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ExportError::OutOfRange {
            offset,
            length,
            size,
        }),
    }
}

/// Extents with neighbours of the same kind merged.
pub fn merge_extents(extents: impl IntoIterator<Item = Extent>) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    for e in extents {
        match out.last_mut() {
            Some(last) if last.kind == e.kind && last.offset + last.length == e.offset => {
                last.length += e.length
            }
            _ => out.push(e),
        }
    }
    out
}

/// Whether an extent is a hole.
pub fn is_zero(e: &Extent) -> bool {
    e.kind == ExtentKind::Zero
}
