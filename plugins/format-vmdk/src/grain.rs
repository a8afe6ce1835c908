//! Compressed grains of stream-optimized extents: an optional marker, then a zlib stream.

use crate::header::{Header, SECTOR};
use aero_plugin_api::{ByteSource, Error, Result};
use flate2::{Decompress, FlushDecompress, Status};

/// Bytes of a grain marker: the grain's first sector (`u64`) and the compressed size (`u32`).
const MARKER_BYTES: u64 = 12;

/// Decompresses grain `grain` stored at byte `offset`; returns at least `needed` bytes.
pub fn inflate(
    source: &dyn ByteSource,
    header: &Header,
    grain: u64,
    offset: u64,
    needed: u64,
) -> Result<Vec<u8>> {
    let name = source.name();
    let corrupt = |problem: String| {
        Error::corrupt(format!(
            "{name}: compressed grain {grain} at offset {offset}: {problem}"
        ))
    };
    // zlib never grows data by more than a few bytes per 16 KiB block.
    let max_compressed = header.grain_bytes * 2 + 4096;
    let available = source.len().saturating_sub(offset);
    let (data_at, size) = if header.markers {
        if available < MARKER_BYTES {
            return Err(corrupt(format!(
                "the marker lies past the end of the file ({} bytes)",
                source.len()
            )));
        }
        let mut marker = [0u8; MARKER_BYTES as usize];
        source.read_at(offset, &mut marker)?;
        let lba = u64::from_le_bytes(marker[..8].try_into().expect("8 bytes"));
        let size = u64::from(u32::from_le_bytes(marker[8..].try_into().expect("4 bytes")));
        let expected = grain * (header.grain_bytes / SECTOR);
        if lba != expected {
            return Err(corrupt(format!(
                "the marker is for sector {lba}, expected sector {expected}"
            )));
        }
        if size == 0 || size > max_compressed || size > available - MARKER_BYTES {
            return Err(corrupt(format!(
                "compressed size {size} is zero, larger than {max_compressed} or past the end of the file"
            )));
        }
        (offset + MARKER_BYTES, size)
    } else {
        (offset, available.min(max_compressed))
    };
    let mut input = vec![0u8; size as usize];
    source.read_at(data_at, &mut input)?;
    let mut output = vec![0u8; header.grain_bytes as usize];
    let mut stream = Decompress::new(true);
    let status = stream
        .decompress(&input, &mut output, FlushDecompress::Finish)
        .map_err(|e| corrupt(format!("invalid zlib data: {e}")))?;
    if status != Status::StreamEnd {
        return Err(corrupt(format!(
            "the zlib stream is truncated or inflates to more than the grain size ({} bytes)",
            header.grain_bytes
        )));
    }
    let produced = stream.total_out();
    if produced < needed {
        return Err(corrupt(format!(
            "inflates to {produced} bytes, expected {needed}"
        )));
    }
    output.truncate(produced as usize);
    Ok(output)
}
