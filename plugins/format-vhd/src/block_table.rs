//! The block allocation table (BAT) of dynamic and differencing VHDs, loaded and checked.

use crate::dynamic_header::{DynamicHeader, HEADER_SIZE};
use crate::footer::FOOTER_SIZE;
use aero_plugin_api::{ByteSource, Error, Result};

/// A BAT entry of a block that is not allocated.
const UNALLOCATED: u32 = u32::MAX;
/// The largest on-disk BAT accepted.
const MAX_TABLE_BYTES: u64 = 128 * 1024 * 1024;

/// Where each block's sector bitmap and data live.
pub(crate) struct BlockTable {
    /// Sector number of each block's bitmap (`UNALLOCATED` when absent), one per block of the
    /// disk's capacity.
    entries: Vec<u32>,
    /// Bytes per block of guest data.
    pub block_size: u64,
    /// Bytes of the sector bitmap in front of each block.
    pub bitmap_size: u64,
}

impl BlockTable {
    /// Loads the entries covering `capacity` bytes and checks that every allocated block lies
    /// between the metadata and the footer without overlapping another.
    pub fn load(
        source: &dyn ByteSource,
        header_offset: u64,
        header: &DynamicHeader,
        capacity: u64,
    ) -> Result<BlockTable> {
        let name = source.name();
        let corrupt = |what: String| Error::corrupt(format!("{name}: {what}"));
        let footer_start = source.len().saturating_sub(FOOTER_SIZE);
        let block_size = u64::from(header.block_size);
        let blocks = capacity.div_ceil(block_size);
        let max_entries = u64::from(header.max_table_entries);
        if blocks > max_entries {
            return Err(corrupt(format!(
                "VHD block allocation table has {max_entries} entries but the disk needs {blocks}"
            )));
        }
        let table_bytes = align512(max_entries * 4);
        if table_bytes > MAX_TABLE_BYTES {
            return Err(Error::unsupported(format!(
                "{name}: VHD block allocation table of {table_bytes} bytes is too large (at most {MAX_TABLE_BYTES})"
            )));
        }
        let table_offset = header.table_offset;
        let table_end = table_offset
            .checked_add(table_bytes)
            .filter(|&end| end <= footer_start)
            .ok_or_else(|| {
                corrupt(format!(
                    "VHD block allocation table at offset {table_offset} ({table_bytes} bytes) lies past the footer at {footer_start}"
                ))
            })?;
        let header_end = header_offset + HEADER_SIZE;
        if table_offset < header_end && header_offset < table_end {
            return Err(corrupt(format!(
                "VHD block allocation table at offset {table_offset} overlaps the dynamic header at {header_offset}"
            )));
        }
        let mut raw = vec![0u8; (blocks * 4) as usize];
        source.read_at(table_offset, &mut raw)?;
        let entries: Vec<u32> = raw
            .chunks_exact(4)
            .map(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
            .collect();
        let bitmap_size = align512((block_size / 512).div_ceil(8));
        let table = BlockTable {
            entries,
            block_size,
            bitmap_size,
        };
        table.check_blocks(name, header_end.max(table_end), footer_start)?;
        Ok(table)
    }

    fn check_blocks(&self, name: &str, data_start: u64, footer_start: u64) -> Result<()> {
        let stride = self.bitmap_size + self.block_size;
        let mut starts: Vec<u32> = Vec::new();
        for (block, &entry) in self.entries.iter().enumerate() {
            if entry == UNALLOCATED {
                continue;
            }
            let start = u64::from(entry) * 512;
            if start < data_start || start + stride > footer_start {
                return Err(Error::corrupt(format!(
                    "{name}: VHD block {block} at offset {start} ({stride} bytes with its bitmap) lies outside the data area [{data_start}, {footer_start})"
                )));
            }
            starts.push(entry);
        }
        starts.sort_unstable();
        let stride_sectors = stride / 512;
        if let Some(pair) = starts
            .windows(2)
            .find(|w| u64::from(w[0]) + stride_sectors > u64::from(w[1]))
        {
            return Err(Error::corrupt(format!(
                "{name}: VHD blocks at offsets {} and {} overlap",
                u64::from(pair[0]) * 512,
                u64::from(pair[1]) * 512
            )));
        }
        Ok(())
    }

    /// File offset of the sector bitmap of `block`, or `None` when it is not allocated.
    pub fn bitmap_offset(&self, block: u64) -> Option<u64> {
        let entry = *self.entries.get(usize::try_from(block).ok()?)?;
        (entry != UNALLOCATED).then_some(u64::from(entry) * 512)
    }
}

fn align512(n: u64) -> u64 {
    n.div_ceil(512) * 512
}
