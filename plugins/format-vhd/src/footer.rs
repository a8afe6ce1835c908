//! The 512-byte VHD footer: parsing, checksum and the capacity rule.

use aero_plugin_api::{Error, Result};

/// Size of the footer (and of its copy at offset 0 in sparse images).
pub(crate) const FOOTER_SIZE: u64 = 512;
/// The footer cookie.
pub(crate) const COOKIE: &[u8; 8] = b"conectix";
const FORMAT_VERSION: u32 = 0x0001_0000;
/// CHS geometry 65535/16/255: the largest the footer can describe.
const MAX_GEOMETRY_SECTORS: u64 = 65535 * 16 * 255;
/// The largest disk the format allows (2040 GiB).
const MAX_SECTORS: u64 = 0xff00_0000;

/// The disk types this plugin reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

/// The footer fields that matter for reading.
#[derive(Debug, Clone)]
pub(crate) struct Footer {
    pub data_offset: u64,
    pub current_size: u64,
    pub disk_type: DiskType,
    geometry_sectors: u64,
    creator_app: [u8; 4],
}

pub(crate) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The VHD checksum: one's complement of the byte sum, with the 4 checksum bytes at
/// `checksum_at` counted as zero.
pub(crate) fn checksum(bytes: &[u8], checksum_at: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(checksum_at..checksum_at + 4).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

impl Footer {
    /// Parses and checks a footer; `place` says where it was read (for messages).
    pub fn parse(bytes: &[u8], name: &str, place: &str) -> Result<Footer> {
        let bad = |what: String| Error::corrupt(format!("{name}: VHD footer {place}: {what}"));
        if bytes.len() != FOOTER_SIZE as usize || &bytes[..8] != COOKIE {
            return Err(bad("missing 'conectix' cookie".into()));
        }
        let stored = be_u32(bytes, 64);
        let computed = checksum(bytes, 64);
        if stored != computed {
            return Err(bad(format!(
                "bad checksum (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        let version = be_u32(bytes, 12);
        if version != FORMAT_VERSION {
            return Err(Error::unsupported(format!(
                "{name}: VHD footer {place}: file format version {version:#010x} (only 0x00010000 is supported)"
            )));
        }
        let current_size = be_u64(bytes, 48);
        if current_size == 0 || current_size % 512 != 0 {
            return Err(bad(format!(
                "current size {current_size} is not a non-zero multiple of 512"
            )));
        }
        let disk_type = match be_u32(bytes, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            other => {
                return Err(Error::unsupported(format!(
                    "{name}: VHD disk type {other} is not supported (fixed 2, dynamic 3, differencing 4)"
                )))
            }
        };
        let geometry_sectors =
            u64::from(be_u16(bytes, 56)) * u64::from(bytes[58]) * u64::from(bytes[59]);
        let footer = Footer {
            data_offset: be_u64(bytes, 16),
            current_size,
            disk_type,
            geometry_sectors,
            creator_app: [bytes[28], bytes[29], bytes[30], bytes[31]],
        };
        let sectors = footer.capacity() / 512;
        if sectors > MAX_SECTORS {
            return Err(Error::unsupported(format!(
                "{name}: VHD disk of {sectors} sectors is larger than the 2040 GiB the format allows"
            )));
        }
        Ok(footer)
    }

    /// The guest-visible size, as qemu computes it: images written by Virtual PC (`vpc `) and
    /// old qemu (`qemu`) are sized by their CHS geometry unless it is the maximum geometry;
    /// every other creator is sized by `current_size`.
    pub fn capacity(&self) -> u64 {
        let sized_by_geometry = matches!(&self.creator_app, b"vpc " | b"qemu")
            && self.geometry_sectors != MAX_GEOMETRY_SECTORS;
        if sized_by_geometry {
            self.geometry_sectors * 512
        } else {
            self.current_size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer(creator: &[u8; 4], chs: (u16, u8, u8), size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(COOKIE);
        b[12..16].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        b[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        b[28..32].copy_from_slice(creator);
        b[48..56].copy_from_slice(&size.to_be_bytes());
        b[56..58].copy_from_slice(&chs.0.to_be_bytes());
        b[58] = chs.1;
        b[59] = chs.2;
        b[60..64].copy_from_slice(&2u32.to_be_bytes());
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    #[test]
    fn capacity_follows_creator() {
        let size = 5 * 1024 * 1024;
        let chs = (100, 4, 17);
        let by_chs = 100 * 4 * 17 * 512;
        for (creator, expected) in [
            (b"qemu", by_chs),
            (b"vpc ", by_chs),
            (b"qem2", size),
            (b"win ", size),
            (b"xyz ", size),
        ] {
            let f = Footer::parse(&footer(creator, chs, size), "f", "at end").unwrap();
            assert_eq!(f.capacity(), expected, "{creator:?}");
        }
        let max = Footer::parse(&footer(b"qemu", (65535, 16, 255), size), "f", "x").unwrap();
        assert_eq!(max.capacity(), size);
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let mut b = footer(b"qem2", (1, 1, 1), 512);
        b[40] ^= 1;
        let e = Footer::parse(&b, "img.vhd", "at end of file").unwrap_err();
        assert!(e.message().contains("img.vhd") && e.message().contains("checksum"));
    }
}
