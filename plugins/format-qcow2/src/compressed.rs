//! Compressed clusters: the descriptor layout and deflate/zstd decompression.

use std::io::Read;

/// How the image compresses clusters (header compression type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate (type 0, the default).
    Deflate,
    /// Zstandard (type 1).
    Zstd,
}

impl Compression {
    /// The compression with header type byte `value`.
    pub fn from_type(value: u8) -> Result<Self, String> {
        match value {
            0 => Ok(Compression::Deflate),
            1 => Ok(Compression::Zstd),
            other => Err(format!("unknown compression type {other}")),
        }
    }

    /// Decompresses `input` into exactly `output.len()` bytes; trailing input is ignored.
    pub fn decompress(self, input: &[u8], output: &mut [u8]) -> Result<(), String> {
        match self {
            Compression::Deflate => inflate(input, output),
            Compression::Zstd => unzstd(input, output),
        }
    }
}

fn inflate(input: &[u8], output: &mut [u8]) -> Result<(), String> {
    let mut inflater = flate2::Decompress::new(false);
    inflater
        .decompress(input, output, flate2::FlushDecompress::Finish)
        .map_err(|e| format!("deflate data is invalid: {e}"))?;
    if inflater.total_out() != output.len() as u64 {
        return Err(format!(
            "deflate data decompresses to {} bytes instead of {}",
            inflater.total_out(),
            output.len()
        ));
    }
    Ok(())
}

fn unzstd(input: &[u8], output: &mut [u8]) -> Result<(), String> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
        .map_err(|e| format!("zstd decoder: {e}"))?
        .single_frame();
    decoder
        .read_exact(output)
        .map_err(|e| format!("zstd data is invalid or too short: {e}"))
}

/// Where a compressed cluster's bytes lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedExtent {
    /// File offset of the first compressed byte.
    pub offset: u64,
    /// Upper bound of the compressed length (it ends at a 512-byte sector boundary).
    pub length: u64,
}

impl CompressedExtent {
    /// Decodes the descriptor (bits 0..=61 of an L2 entry) for `cluster_bits`.
    ///
    /// The low `62 - (cluster_bits - 8)` bits are the host offset; the bits above up to bit 61
    /// count the 512-byte sectors that follow the one holding the offset.
    pub fn from_descriptor(descriptor: u64, cluster_bits: u32) -> Self {
        let shift = 62 - (cluster_bits - 8);
        let offset = descriptor & ((1u64 << shift) - 1);
        let sector_mask = (1u64 << (cluster_bits - 8)) - 1;
        let sectors = ((descriptor >> shift) & sector_mask) + 1;
        CompressedExtent {
            offset,
            length: sectors * 512 - (offset & 511),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn descriptor_layout_for_64k_clusters() {
        // 64 KiB clusters: offset in bits 0..54, additional sectors in bits 54..62.
        let descriptor = (3u64 << 54) | 0x1234;
        let extent = CompressedExtent::from_descriptor(descriptor, 16);
        assert_eq!(extent.offset, 0x1234);
        assert_eq!(extent.length, 4 * 512 - 0x34);
    }

    #[test]
    fn round_trips_deflate_and_zstd() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let mut deflated = enc.finish().unwrap();
        deflated.extend_from_slice(&[0xAA; 100]);
        let mut out = vec![0u8; 4096];
        Compression::Deflate
            .decompress(&deflated, &mut out)
            .unwrap();
        assert_eq!(out, data);

        let mut zstded = zstd::bulk::compress(&data, 3).unwrap();
        zstded.extend_from_slice(&[0u8; 100]);
        let mut out = vec![0u8; 4096];
        Compression::Zstd.decompress(&zstded, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn short_or_garbage_input_is_an_error() {
        let mut out = vec![0u8; 4096];
        for c in [Compression::Deflate, Compression::Zstd] {
            assert!(c.decompress(&[], &mut out).is_err());
            assert!(c.decompress(&[0xFF; 64], &mut out).is_err());
        }
        let small = zstd::bulk::compress(&[1u8; 100], 3).unwrap();
        assert!(Compression::Zstd.decompress(&small, &mut out).is_err());
    }
}
