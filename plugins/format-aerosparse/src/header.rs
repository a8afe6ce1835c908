//! The 64-byte AeroSparse v1 header: validation in the order SPEC 2.1 gives, and encoding.

use aero_plugin_api::{Error, Result};

/// The magic at offset 0.
pub(crate) const MAGIC: &[u8; 8] = b"AEROSPAR";
/// Size of the header, which is also where the allocation table starts.
pub(crate) const HEADER_SIZE: u64 = 64;
const VERSION: u32 = 1;
/// The largest block size.
const MAX_BLOCK_SIZE: u32 = 64 * 1024 * 1024;
/// The largest allocation table, in bytes and in entries.
const MAX_TABLE_BYTES: u64 = 128 * 1024 * 1024;
const MAX_TABLE_ENTRIES: u64 = 16 * 1024 * 1024;

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub block_size: u32,
    pub disk_size: u64,
    pub table_entries: u64,
    pub data_offset: u64,
    pub allocated_blocks: u64,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Checks a block size: non-zero, a power of two, a multiple of 512, at most 64 MiB.
pub(crate) fn check_block_size(block_size: u32) -> std::result::Result<(), String> {
    if block_size < 512 || !block_size.is_power_of_two() || block_size > MAX_BLOCK_SIZE {
        return Err(format!(
            "block size {block_size} is not a power of two between 512 and 64 MiB"
        ));
    }
    Ok(())
}

impl Header {
    /// The header of a disk of `disk_size` bytes in blocks of `block_size`, with no blocks yet.
    /// Errors say what is wrong with the geometry.
    pub fn new(block_size: u32, disk_size: u64) -> std::result::Result<Header, String> {
        check_block_size(block_size)?;
        if disk_size == 0 || disk_size % 512 != 0 {
            return Err(format!(
                "disk size {disk_size} is not a non-zero multiple of 512"
            ));
        }
        let table_entries = disk_size.div_ceil(u64::from(block_size));
        check_table_size(table_entries)?;
        Ok(Header {
            block_size,
            disk_size,
            table_entries,
            data_offset: data_offset(table_entries, block_size),
            allocated_blocks: 0,
        })
    }

    /// Parses and validates the header of the file called `name`.
    pub fn parse(bytes: &[u8; 64], name: &str) -> Result<Header> {
        let invalid = |what: String| {
            Error::corrupt(format!("{name}: aerosparse: invalid sparse header: {what}"))
        };
        if &bytes[..8] != MAGIC {
            return Err(invalid("missing AEROSPAR magic".into()));
        }
        let version = le_u32(bytes, 8);
        if version != VERSION {
            return Err(invalid(format!("version {version} (only 1 is supported)")));
        }
        let header_size = le_u32(bytes, 12);
        if u64::from(header_size) != HEADER_SIZE {
            return Err(invalid(format!("header size {header_size} (must be 64)")));
        }
        let block_size = le_u32(bytes, 16);
        check_block_size(block_size).map_err(invalid)?;
        let disk_size = le_u64(bytes, 24);
        if disk_size == 0 || disk_size % 512 != 0 {
            return Err(invalid(format!(
                "disk size {disk_size} is not a non-zero multiple of 512"
            )));
        }
        let table_offset = le_u64(bytes, 32);
        if table_offset != HEADER_SIZE {
            return Err(invalid(format!("table offset {table_offset} (must be 64)")));
        }
        let table_entries = le_u64(bytes, 40);
        let expected_entries = disk_size.div_ceil(u64::from(block_size));
        if table_entries == 0 || table_entries != expected_entries {
            return Err(invalid(format!(
                "table has {table_entries} entries; a disk of {disk_size} bytes in blocks of {block_size} needs {expected_entries}"
            )));
        }
        check_table_size(table_entries)
            .map_err(|what| Error::unsupported(format!("{name}: {what}")))?;
        let data_offset = le_u64(bytes, 48);
        let expected_data_offset = self::data_offset(table_entries, block_size);
        if data_offset != expected_data_offset {
            return Err(invalid(format!(
                "data offset {data_offset} (must be {expected_data_offset})"
            )));
        }
        let allocated_blocks = le_u64(bytes, 56);
        if allocated_blocks > table_entries {
            return Err(invalid(format!(
                "{allocated_blocks} allocated blocks but only {table_entries} table entries"
            )));
        }
        Ok(Header {
            block_size,
            disk_size,
            table_entries,
            data_offset,
            allocated_blocks,
        })
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.block_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.disk_size.to_le_bytes());
        b[32..40].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        b[40..48].copy_from_slice(&self.table_entries.to_le_bytes());
        b[48..56].copy_from_slice(&self.data_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.allocated_blocks.to_le_bytes());
        b
    }

    /// One past the last byte of the allocation table.
    pub fn table_end(&self) -> u64 {
        HEADER_SIZE + 8 * self.table_entries
    }

    /// One past the last byte of the data region.
    pub fn data_end(&self) -> u64 {
        self.data_offset + self.allocated_blocks * u64::from(self.block_size)
    }
}

fn check_table_size(entries: u64) -> std::result::Result<(), String> {
    if entries > MAX_TABLE_ENTRIES || entries * 8 > MAX_TABLE_BYTES {
        return Err(format!(
            "aerosparse allocation table too large ({entries} entries; at most {MAX_TABLE_ENTRIES})"
        ));
    }
    Ok(())
}

/// `align_up(64 + 8 × entries, block_size)`; entries are at most 16 Mi, so this cannot overflow.
fn data_offset(entries: u64, block_size: u32) -> u64 {
    (HEADER_SIZE + 8 * entries).next_multiple_of(u64::from(block_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_fields() {
        let header = Header::new(65536, 1 << 30).unwrap();
        assert_eq!(header.data_offset, 196608);
        let bytes = header.encode();
        assert_eq!(Header::parse(&bytes, "x").unwrap(), header);
        for (at, value, needle) in [
            (8, 2u64, "version"),
            (12, 32, "header size"),
            (16, 1000, "block size"),
            (24, 1000, "disk size"),
            (32, 0, "table offset"),
            (40, 7, "entries"),
            (48, 0, "data offset"),
            (56, 1 << 20, "allocated"),
        ] {
            let mut b = bytes;
            let width = if matches!(at, 8 | 12 | 16) { 4 } else { 8 };
            b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            let e = Header::parse(&b, "bad.aerosparse").unwrap_err();
            assert!(
                e.message().contains("bad.aerosparse") && e.message().contains(needle),
                "{e}"
            );
        }
        let huge = Header {
            table_entries: 1 << 25,
            disk_size: (1 << 25) * 512,
            block_size: 512,
            data_offset: 0,
            allocated_blocks: 0,
        };
        let e = Header::parse(&huge.encode(), "h").unwrap_err();
        assert!(e.message().contains("allocation table too large"), "{e}");
    }
}
