//! The sparse extent header (`KDMV`) at the start of the file, or in the footer of a
//! stream-optimized file whose header says the grain directory is at the end.

use aero_plugin_api::{ByteSource, Error, Result};

/// Bytes in a sector.
pub const SECTOR: u64 = 512;
/// The magic number, `KDMV` in the file.
pub const MAGIC: &[u8; 4] = b"KDMV";
/// `gdOffset` value meaning "read the footer at the end of the file".
const GD_AT_END: u64 = u64::MAX;
/// The largest grain this plugin reads (it bounds decompression buffers).
pub const MAX_GRAIN_BYTES: u64 = 16 << 20;
/// The largest grain directory this plugin loads, in entries.
const MAX_GD_ENTRIES: u64 = 16 << 20;

const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const COMPRESSION_DEFLATE: u16 = 1;
const MARKER_FOOTER: u32 = 3;

/// The facts of a sparse extent header that reading needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Guest-visible size in bytes.
    pub capacity: u64,
    /// Grain size in bytes.
    pub grain_bytes: u64,
    /// Grain table entries per grain table.
    pub gtes_per_gt: u64,
    /// Grain directory offset in bytes.
    pub gd_offset: u64,
    /// Redundant grain directory offset in bytes, when the file has one.
    pub rgd_offset: Option<u64>,
    /// Entries in the grain directory.
    pub gd_entries: u64,
    /// Embedded descriptor `(offset, length)` in bytes, when present.
    pub descriptor: Option<(u64, u64)>,
    /// Grain table entry 1 means "zeros".
    pub zero_grains: bool,
    /// Grains are deflate-compressed.
    pub compressed: bool,
    /// Compressed grains start with a marker (`lba`, `size`).
    pub markers: bool,
}

/// Little-endian fields of a 512-byte header.
struct Raw<'a>(&'a [u8; 512]);

impl Raw<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(b)
    }
}

impl Header {
    /// Reads and validates the header of `source` (and its footer when the grain directory
    /// is at the end).
    pub fn read(source: &dyn ByteSource) -> Result<Header> {
        let name = source.name();
        let head = read_block(source, 0)?;
        let header = Raw(&head);
        if &head[..4] != MAGIC {
            return Err(Error::corrupt(format!(
                "{name}: not a VMDK sparse extent (no KDMV magic)"
            )));
        }
        if header.u64(56) != GD_AT_END {
            return Self::parse(name, source.len(), &header);
        }
        // Stream-optimized: footer marker, footer header, end-of-stream marker.
        let footer_at = source.len().checked_sub(3 * SECTOR).ok_or_else(|| {
            Error::corrupt(format!(
                "{name}: vmdk: grain directory is at the end but the file is too short for a footer"
            ))
        })?;
        let marker = read_block(source, footer_at)?;
        let footer = read_block(source, footer_at + SECTOR)?;
        if Raw(&marker).u32(12) != MARKER_FOOTER || &footer[..4] != MAGIC {
            return Err(Error::corrupt(format!(
                "{name}: vmdk: grain directory is at the end but there is no footer at offset {footer_at}"
            )));
        }
        let footer = Raw(&footer);
        if footer.u64(56) == GD_AT_END {
            return Err(Error::corrupt(format!(
                "{name}: vmdk: the footer does not say where the grain directory is"
            )));
        }
        Self::parse(name, source.len(), &footer)
    }

    fn parse(name: &str, file_len: u64, raw: &Raw<'_>) -> Result<Header> {
        let corrupt = |problem: String| Error::corrupt(format!("{name}: vmdk: {problem}"));
        let version = raw.u32(4);
        if !(1..=3).contains(&version) {
            return Err(Error::unsupported(format!(
                "{name}: VMDK sparse extent version {version} is not supported (1 to 3 are)"
            )));
        }
        let flags = raw.u32(8);
        let sectors = |value: u64, what: &str| {
            value
                .checked_mul(SECTOR)
                .ok_or_else(|| corrupt(format!("{what} of {value} sectors overflows")))
        };
        let capacity = sectors(raw.u64(12), "capacity")?;
        let grain_bytes = sectors(raw.u64(20), "grain size")?;
        if grain_bytes == 0 || grain_bytes > MAX_GRAIN_BYTES {
            return Err(corrupt(format!(
                "grain size of {grain_bytes} bytes is outside 512 bytes to {MAX_GRAIN_BYTES} bytes"
            )));
        }
        let gtes_per_gt = u64::from(raw.u32(44));
        if !(1..=512).contains(&gtes_per_gt) {
            return Err(corrupt(format!(
                "{gtes_per_gt} entries per grain table is outside 1 to 512"
            )));
        }
        let compressed = flags & FLAG_COMPRESSED != 0;
        let algorithm = raw.u16(77);
        if compressed && algorithm != COMPRESSION_DEFLATE {
            return Err(Error::unsupported(format!(
                "{name}: grain compression algorithm {algorithm} is not supported (only deflate)"
            )));
        }
        // qemu refuses a file shorter than its metadata ("File truncated").
        let overhead = sectors(raw.u64(64), "overhead")?;
        if overhead > file_len {
            return Err(corrupt(format!(
                "file truncated: the header's overhead (offset 64) says the metadata ends at {overhead} bytes, past the end of the file ({file_len} bytes)"
            )));
        }
        let gd_offset = sectors(raw.u64(56), "grain directory offset")?;
        let rgd = raw.u64(48);
        let rgd_offset = if flags & 2 != 0 && rgd != 0 {
            Some(sectors(rgd, "redundant grain directory offset")?)
        } else {
            None
        };
        let span = grain_bytes * gtes_per_gt;
        let gd_entries = capacity.div_ceil(span);
        if gd_entries > MAX_GD_ENTRIES {
            return Err(Error::unsupported(format!(
                "{name}: grain directory of {gd_entries} entries exceeds the supported {MAX_GD_ENTRIES}"
            )));
        }
        for (what, offset) in [
            ("grain directory", Some(gd_offset)),
            ("redundant grain directory", rgd_offset),
        ] {
            let Some(offset) = offset else { continue };
            if gd_entries > 0
                && (offset == 0
                    || offset
                        .checked_add(gd_entries * 4)
                        .is_none_or(|end| end > file_len))
            {
                return Err(corrupt(format!(
                    "{what} of {gd_entries} entries at offset {offset} lies outside the file ({file_len} bytes)"
                )));
            }
        }
        let descriptor = match (raw.u64(28), raw.u64(36)) {
            (0, _) | (_, 0) => None,
            (offset, size) => Some((
                sectors(offset, "descriptor offset")?,
                sectors(size, "descriptor size")?,
            )),
        };
        Ok(Header {
            capacity,
            grain_bytes,
            gtes_per_gt,
            gd_offset,
            rgd_offset,
            gd_entries,
            descriptor,
            zero_grains: flags & FLAG_ZERO_GRAIN != 0,
            compressed,
            markers: flags & FLAG_MARKERS != 0,
        })
    }
}

/// The 512 bytes at `offset`.
pub fn read_block(source: &dyn ByteSource, offset: u64) -> Result<[u8; 512]> {
    let mut block = [0u8; 512];
    match offset.checked_add(SECTOR) {
        Some(end) if end <= source.len() => {
            source.read_at(offset, &mut block)?;
            Ok(block)
        }
        _ => Err(Error::corrupt(format!(
            "{}: vmdk: the file ends ({} bytes) before the 512-byte block at offset {offset}",
            source.name(),
            source.len()
        ))),
    }
}
