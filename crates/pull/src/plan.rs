//! What becomes of each chunk: a hole, already written, copied from the cache, or downloaded.

use aero_chunk_cache::ChunkCache;
use aero_chunked::format::{zeros_sha256_hex, Manifest};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What a pull does (or did) with one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkFate {
    /// All zeros: never fetched, left a hole.
    Zero,
    /// Written by an earlier, interrupted pull of the same manifest.
    Resumed,
    /// Copied from the chunk cache.
    Reused,
    /// Fetched from the image's source.
    Downloaded,
}

/// The fate of every chunk, as far as it is known before fetching (a cached chunk may turn
/// out damaged or evicted and be downloaded instead).
pub(crate) fn plan(
    manifest: &Manifest,
    written: &HashSet<u64>,
    cache: Option<&ChunkCache>,
) -> Vec<ChunkFate> {
    let mut zero_digests = HashMap::new();
    (0..manifest.chunk_count)
        .map(|index| {
            let len = manifest.chunk_len(index);
            let entry = manifest.chunks.as_ref().and_then(|c| c.get(index as usize));
            let digest = manifest.chunk_sha256(index);
            let zero = entry.is_some_and(|e| e.zero)
                || digest.as_deref().is_some_and(|d| {
                    d == zero_digests
                        .entry(len)
                        .or_insert_with(|| zeros_sha256_hex(len))
                });
            if zero {
                ChunkFate::Zero
            } else if written.contains(&index) {
                ChunkFate::Resumed
            } else if digest.is_some_and(|d| cache.is_some_and(|c| c.contains(&d))) {
                ChunkFate::Reused
            } else {
                ChunkFate::Downloaded
            }
        })
        .collect()
}
