//! Dynamic and differencing VHDs: blocks located through the BAT, each preceded by a sector
//! bitmap. A dynamic disk reads allocated blocks whole and unallocated blocks as zeros (as
//! qemu does, without consulting the bitmap); a differencing disk reads the sectors whose
//! bitmap bit is clear, and unallocated blocks, from its parent.

use crate::block_table::BlockTable;
use crate::check_range;
use aero_plugin_api::{
    Backing, ByteSource, DiskInfo, Extent, ExtentCollector, ExtentKind, Result, VirtualDisk,
};
use std::sync::Arc;

/// A dynamic disk (no parent) or a differencing disk (with its parent).
pub(crate) struct SparseDisk {
    pub source: Arc<dyn ByteSource>,
    pub capacity: u64,
    pub table: BlockTable,
    pub parent: Option<Backing>,
}

/// A run of bytes inside one block: stored in the image or not.
struct Run {
    offset: u64,
    length: u64,
    stored: bool,
}

impl SparseDisk {
    /// Splits `[offset, offset + length)`, which lies inside one allocated block whose bitmap is
    /// at `bitmap_at`, into runs of sectors stored in this image or left to the parent.
    fn runs_in_block(&self, bitmap_at: u64, offset: u64, length: u64) -> Result<Vec<Run>> {
        let in_block = offset % self.table.block_size;
        if self.parent.is_none() {
            return Ok(vec![Run {
                offset,
                length,
                stored: true,
            }]);
        }
        let first_sector = in_block / 512;
        let last_sector = (in_block + length - 1) / 512;
        let mut bitmap = vec![0u8; (last_sector / 8 - first_sector / 8 + 1) as usize];
        self.source
            .read_at(bitmap_at + first_sector / 8, &mut bitmap)?;
        let stored = |sector: u64| {
            let byte = bitmap[(sector / 8 - first_sector / 8) as usize];
            byte & (0x80 >> (sector % 8)) != 0
        };
        let block_start = offset - in_block;
        let end = offset + length;
        let mut runs: Vec<Run> = Vec::new();
        for sector in first_sector..=last_sector {
            let start = (block_start + sector * 512).max(offset);
            let stop = (block_start + (sector + 1) * 512).min(end);
            let bit = stored(sector);
            match runs.last_mut() {
                Some(run) if run.stored == bit => run.length += stop - start,
                _ => runs.push(Run {
                    offset: start,
                    length: stop - start,
                    stored: bit,
                }),
            }
        }
        Ok(runs)
    }

    /// The file offset of guest byte `offset` inside the allocated block at `bitmap_at`.
    fn data_offset(&self, bitmap_at: u64, offset: u64) -> u64 {
        bitmap_at + self.table.bitmap_size + offset % self.table.block_size
    }

    /// Fills `buf` with the parent's bytes at `offset`, zeros where there is no parent.
    fn read_parent(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(parent) = &self.parent else {
            buf.fill(0);
            return Ok(());
        };
        let available = parent.disk.capacity().saturating_sub(offset);
        let split = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let (inside, beyond) = buf.split_at_mut(split);
        if !inside.is_empty() {
            parent.disk.read_at(offset, inside)?;
        }
        beyond.fill(0);
        Ok(())
    }

    /// The parent's block status of a range, zeros where there is no parent.
    fn parent_status(&self, offset: u64, length: u64, out: &mut ExtentCollector) -> Result<()> {
        let inside = match &self.parent {
            Some(parent) => parent.disk.capacity().saturating_sub(offset).min(length),
            None => 0,
        };
        if let Some(parent) = self.parent.as_ref().filter(|_| inside > 0) {
            for extent in parent.disk.block_status(offset, inside)? {
                out.push(extent.offset, extent.length, extent.kind)?;
            }
        }
        out.push(offset + inside, length - inside, ExtentKind::Zero)?;
        Ok(())
    }

    /// Calls `f` for each piece of `[offset, offset + length)` that lies within one block.
    fn for_each_block_piece(
        &self,
        offset: u64,
        length: u64,
        mut f: impl FnMut(u64, u64, Option<u64>) -> Result<()>,
    ) -> Result<()> {
        let block_size = self.table.block_size;
        let end = offset + length;
        let mut pos = offset;
        while pos < end {
            let block = pos / block_size;
            let piece = (block_size - pos % block_size).min(end - pos);
            f(pos, piece, self.table.bitmap_offset(block))?;
            pos += piece;
        }
        Ok(())
    }
}

impl VirtualDisk for SparseDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len() as u64, self.capacity)?;
        self.for_each_block_piece(offset, buf.len() as u64, |pos, piece, bitmap_at| {
            let at = (pos - offset) as usize;
            let out = &mut buf[at..at + piece as usize];
            let Some(bitmap_at) = bitmap_at else {
                return self.read_parent(pos, out);
            };
            for run in self.runs_in_block(bitmap_at, pos, piece)? {
                let at = (run.offset - pos) as usize;
                let part = &mut out[at..at + run.length as usize];
                if run.stored {
                    self.source
                        .read_at(self.data_offset(bitmap_at, run.offset), part)?;
                } else {
                    self.read_parent(run.offset, part)?;
                }
            }
            Ok(())
        })
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        check_range(offset, length, self.capacity)?;
        let mut out = ExtentCollector::new(offset, length);
        self.for_each_block_piece(offset, length, |pos, piece, bitmap_at| {
            let Some(bitmap_at) = bitmap_at else {
                return self.parent_status(pos, piece, &mut out);
            };
            for run in self.runs_in_block(bitmap_at, pos, piece)? {
                if run.stored {
                    out.push(run.offset, run.length, ExtentKind::Data)?;
                } else {
                    self.parent_status(run.offset, run.length, &mut out)?;
                }
            }
            Ok(())
        })?;
        out.finish()
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::new(Some(self.table.block_size))
            .with_backing_chain(self.parent.as_ref().map(Backing::chain).unwrap_or_default())
    }
}
