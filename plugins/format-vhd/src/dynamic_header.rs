//! The 1024-byte dynamic disk header of dynamic and differencing VHDs, with the parent
//! references of a differencing disk.

use crate::footer::{be_u32, be_u64, checksum};
use aero_plugin_api::{ByteSource, Error, Result};

/// Size of the dynamic disk header.
pub(crate) const HEADER_SIZE: u64 = 1024;
const COOKIE: &[u8; 8] = b"cxsparse";
const HEADER_VERSION: u32 = 0x0001_0000;
/// The largest block size accepted.
const MAX_BLOCK_SIZE: u32 = 64 * 1024 * 1024;
/// The longest parent locator read.
const MAX_LOCATOR_BYTES: u32 = 64 * 1024;

/// The fields of the dynamic disk header used for reading.
pub(crate) struct DynamicHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
    parent_name: String,
    locators: Vec<Locator>,
}

/// One parent locator entry.
struct Locator {
    code: [u8; 4],
    length: u32,
    offset: u64,
}

impl DynamicHeader {
    /// Parses and checks the header bytes.
    pub fn parse(bytes: &[u8], name: &str) -> Result<DynamicHeader> {
        let bad = |what: String| Error::corrupt(format!("{name}: VHD dynamic header: {what}"));
        if bytes.len() != HEADER_SIZE as usize || &bytes[..8] != COOKIE {
            return Err(bad("missing 'cxsparse' cookie".into()));
        }
        let stored = be_u32(bytes, 36);
        let computed = checksum(bytes, 36);
        if stored != computed {
            return Err(bad(format!(
                "bad checksum (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        let version = be_u32(bytes, 24);
        if version != HEADER_VERSION {
            return Err(Error::unsupported(format!(
                "{name}: VHD dynamic header version {version:#010x} (only 0x00010000 is supported)"
            )));
        }
        let table_offset = be_u64(bytes, 16);
        if table_offset < 512 || table_offset % 512 != 0 {
            return Err(bad(format!(
                "block allocation table offset {table_offset} is not a 512-aligned offset after the first sector"
            )));
        }
        let max_table_entries = be_u32(bytes, 28);
        if max_table_entries == 0 {
            return Err(bad("the block allocation table has no entries".into()));
        }
        let block_size = be_u32(bytes, 32);
        // qemu and the VHD specification: a power of two of at least one sector.
        if !block_size.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(bad(format!(
                "block size {block_size} (offset 32) is not a power of two from 512 bytes to 64 MiB"
            )));
        }
        let parent_name = decode_utf16(&bytes[64..576], u16::from_be_bytes);
        let locators = bytes[576..768]
            .chunks_exact(24)
            .map(|e| Locator {
                code: [e[0], e[1], e[2], e[3]],
                length: be_u32(e, 8),
                offset: be_u64(e, 16),
            })
            .filter(|l| l.code != [0; 4])
            .collect();
        Ok(DynamicHeader {
            table_offset,
            max_table_entries,
            block_size,
            parent_name,
            locators,
        })
    }

    /// The parent references of a differencing disk, most specific first: relative Windows
    /// paths (W2ru), absolute Windows paths (W2ku), Mac paths or URLs, then the parent's name.
    pub fn parent_references(&self, source: &dyn ByteSource) -> Result<Vec<String>> {
        let mut references = Vec::new();
        for code in [b"W2ru", b"W2ku", b"Mac "] {
            for locator in self.locators.iter().filter(|l| &l.code == code) {
                let bytes = read_locator(source, locator)?;
                let reference = if code == b"Mac " {
                    mac_reference(&bytes)
                } else {
                    windows_reference(&decode_utf16(&bytes, u16::from_le_bytes))
                };
                if !reference.is_empty() && !references.contains(&reference) {
                    references.push(reference);
                }
            }
        }
        if !self.parent_name.is_empty() && !references.contains(&self.parent_name) {
            references.push(self.parent_name.clone());
        }
        Ok(references)
    }
}

fn read_locator(source: &dyn ByteSource, locator: &Locator) -> Result<Vec<u8>> {
    let name = source.name();
    let code = String::from_utf8_lossy(&locator.code);
    if locator.length > MAX_LOCATOR_BYTES {
        return Err(Error::corrupt(format!(
            "{name}: VHD parent locator '{code}' is {} bytes long (at most {MAX_LOCATOR_BYTES} accepted)",
            locator.length
        )));
    }
    let in_file = locator
        .offset
        .checked_add(u64::from(locator.length))
        .is_some_and(|end| end <= source.len());
    if !in_file {
        return Err(Error::corrupt(format!(
            "{name}: VHD parent locator '{code}' at offset {} ({} bytes) lies past the end of the file",
            locator.offset, locator.length
        )));
    }
    let mut bytes = vec![0u8; locator.length as usize];
    source.read_at(locator.offset, &mut bytes)?;
    Ok(bytes)
}

/// Decodes UTF-16 code units up to the first NUL, replacing invalid sequences.
fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| unit([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// A Windows path with `/` separators (`.\base.vhd` → `./base.vhd`).
fn windows_reference(path: &str) -> String {
    path.replace('\\', "/")
}

/// A Mac locator: a UTF-8 `file://` URL (percent-encoded) or a plain path.
fn mac_reference(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\0');
    match text.strip_prefix("file://") {
        Some(rest) => percent_decode(rest.strip_prefix("localhost").unwrap_or(rest)),
        None => text.to_string(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_locator_texts() {
        assert_eq!(windows_reference(".\\dir\\base.vhd"), "./dir/base.vhd");
        assert_eq!(
            mac_reference(b"file://localhost/tmp/my%20base.vhd"),
            "/tmp/my base.vhd"
        );
        assert_eq!(mac_reference(b"file:///a/b.vhd"), "/a/b.vhd");
        assert_eq!(mac_reference(b"/a/b.vhd\0"), "/a/b.vhd");
        assert_eq!(percent_decode("50%"), "50%");
        let utf16: Vec<u8> = "ab".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode_utf16(&utf16, u16::from_le_bytes), "ab");
    }
}
