//! The documents of the Aero chunked disk image format v1 (`manifest.json`, `meta.json`,
//! `latest.json`, and the optional catalog of images) with every rule of the specification.

pub mod catalog;
mod latest;
mod manifest;
mod meta;

pub use latest::{Latest, MAX_LATEST_BYTES};
pub use manifest::{
    manifest_version, ChunkEntry, Manifest, ManifestLimits, DEFAULT_MAX_CHUNKS,
    MANIFEST_VERSION_PREFIX, MAX_CHUNK_SIZE, MAX_MANIFEST_BYTES,
};
pub use meta::Meta;

/// `schema` of a manifest.
pub const MANIFEST_SCHEMA: &str = "aero.chunked-disk-image.v1";
/// `schema` of a `latest.json` pointer.
pub const LATEST_SCHEMA: &str = "aero.chunked-disk-image.latest.v1";
/// `mimeType` of chunk objects.
pub const CHUNK_MIME: &str = "application/octet-stream";
/// The chunk index width the publisher writes.
pub const CHUNK_INDEX_WIDTH: u32 = 8;
/// Default chunk size (4 MiB).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// Default Cache-Control of chunks, manifests and meta.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable, no-transform";
/// Default Cache-Control of `latest.json`.
pub const LATEST_CACHE_CONTROL: &str = "public, max-age=60, no-transform";

/// Whether a Cache-Control value contains the `no-transform` token.
pub fn has_no_transform(cache_control: &str) -> bool {
    cache_control
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("no-transform"))
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Zeros that runs of zeros are hashed from, a slice at a time.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Feeds `len` zero bytes to `hasher`, without allocating them.
pub fn hash_zeros(hasher: &mut sha2::Sha256, mut len: u64) {
    use sha2::Digest;
    while len > 0 {
        let n = len.min(ZEROS.len() as u64);
        hasher.update(&ZEROS[..n as usize]);
        len -= n;
    }
}

/// Lowercase hex sha256 of `len` zero bytes: the digest of a zero chunk of that size.
pub fn zeros_sha256_hex(len: u64) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hash_zeros(&mut hasher, len);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_digests_match_hashing_the_zeros() {
        for len in [0, 1, 4096, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 << 20] {
            assert_eq!(
                zeros_sha256_hex(len),
                sha256_hex(&vec![0; len as usize]),
                "{len}"
            );
        }
    }
}
