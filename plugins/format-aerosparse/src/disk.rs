//! Opening and reading AeroSparse images: the allocation table is loaded and checked once, then
//! reads map logical blocks to physical slots, coalescing physically contiguous runs.

use crate::header::{Header, HEADER_SIZE};
use aero_plugin_api::{
    ByteSource, DiskInfo, Error, Extent, ExtentCollector, ExtentKind, Result, VirtualDisk,
};
use std::sync::Arc;

/// An open AeroSparse image.
pub(crate) struct SparseDisk {
    source: Arc<dyn ByteSource>,
    header: Header,
    /// Physical byte offset of each logical block, 0 when unallocated.
    table: Vec<u64>,
}

impl SparseDisk {
    /// Validates `source` as SPEC 2.1 lays out (first failure wins) and loads its table.
    pub fn open(source: Arc<dyn ByteSource>) -> Result<SparseDisk> {
        let name = source.name();
        let corrupt = |what: String| Error::corrupt(format!("{name}: aerosparse: {what}"));
        let len = source.len();
        if len < HEADER_SIZE {
            return Err(corrupt("truncated sparse header".into()));
        }
        let mut bytes = [0u8; HEADER_SIZE as usize];
        source.read_at(0, &mut bytes)?;
        let header = Header::parse(&bytes, name)?;
        for (what, end) in [
            ("allocation table", header.table_end()),
            ("data region start", header.data_offset),
            ("data region", header.data_end()),
        ] {
            if len < end {
                return Err(corrupt(format!(
                    "file of {len} bytes is truncated: the {what} ends at {end}"
                )));
            }
        }
        let table = read_table(source.as_ref(), header.table_entries)?;
        check_table(&header, &table).map_err(corrupt)?;
        Ok(SparseDisk {
            source,
            header,
            table,
        })
    }

    fn block_size(&self) -> u64 {
        u64::from(self.header.block_size)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.header.disk_size => Ok(()),
            _ => Err(Error::out_of_bounds(offset, len, self.header.disk_size)),
        }
    }
}

/// Reads `entries` little-endian table entries in pieces, so the raw bytes are never held
/// alongside the whole table.
fn read_table(source: &dyn ByteSource, entries: u64) -> Result<Vec<u64>> {
    const PIECE_ENTRIES: u64 = 128 * 1024;
    let mut table = Vec::with_capacity(entries as usize);
    let mut raw = vec![0u8; (PIECE_ENTRIES.min(entries) * 8) as usize];
    let mut done = 0;
    while done < entries {
        let n = PIECE_ENTRIES.min(entries - done);
        let piece = &mut raw[..(n * 8) as usize];
        source.read_at(HEADER_SIZE + done * 8, piece)?;
        table.extend(
            piece
                .chunks_exact(8)
                .map(|e| u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]])),
        );
        done += n;
    }
    Ok(table)
}

/// Checks every allocated entry: inside the data region, aligned, in a distinct slot.
fn check_table(header: &Header, table: &[u64]) -> std::result::Result<(), String> {
    let block_size = u64::from(header.block_size);
    let mut used = vec![0u64; header.allocated_blocks.div_ceil(64) as usize];
    for (block, &entry) in table.iter().enumerate() {
        if entry == 0 {
            continue;
        }
        let fail = |what: &str| format!("{what} (block {block} at offset {entry})");
        if entry < header.data_offset {
            return Err(fail("data block offset before data region"));
        }
        let relative = entry - header.data_offset;
        if relative % block_size != 0 {
            return Err(fail("misaligned data block offset"));
        }
        let slot = relative / block_size;
        if slot >= header.allocated_blocks || entry + block_size > header.data_end() {
            return Err(fail("data block offset out of bounds"));
        }
        let (word, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
        if used[word] & bit != 0 {
            return Err(fail("duplicate data block offset"));
        }
        used[word] |= bit;
    }
    Ok(())
}

impl VirtualDisk for SparseDisk {
    fn capacity(&self) -> u64 {
        self.header.disk_size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let block_size = self.block_size();
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / block_size;
            let first = self.table[block as usize];
            // Extend the run while the next blocks are stored right after this one (or, for
            // unallocated blocks, while they stay unallocated).
            let mut run_end = ((block + 1) * block_size).min(end);
            let mut next = block + 1;
            while run_end < end {
                let entry = self.table[next as usize];
                let follows = if first == 0 {
                    entry == 0
                } else {
                    entry == first + (next - block) * block_size
                };
                if !follows {
                    break;
                }
                run_end = ((next + 1) * block_size).min(end);
                next += 1;
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            if first == 0 {
                out.fill(0);
            } else {
                self.source.read_at(first + pos % block_size, out)?;
            }
            pos = run_end;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.check_range(offset, length)?;
        let block_size = self.block_size();
        let end = offset + length;
        let mut out = ExtentCollector::new(offset, length);
        let mut pos = offset;
        while pos < end {
            let block = pos / block_size;
            let stop = ((block + 1) * block_size).min(end);
            let kind = if self.table[block as usize] == 0 {
                ExtentKind::Zero
            } else {
                ExtentKind::Data
            };
            out.push(pos, stop - pos, kind)?;
            pos = stop;
        }
        out.finish()
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::new(Some(self.block_size()))
    }
}
