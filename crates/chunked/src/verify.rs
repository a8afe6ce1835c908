//! Verifying: re-read a published image and check its manifest, meta, pointer and chunks,
//! reporting every bad chunk.

use crate::error::invalid;
use crate::format::{ManifestLimits, Meta, MAX_LATEST_BYTES};
use crate::layout::META_NAME;
use crate::resolve::{resolve, Locator, Resolved};
use crate::source::HttpSource;
use crate::store::ExpectedChunk;
use crate::Result;
use aero_plugin_api::backend::Storage;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Where the manifest comes from.
pub enum VerifySource {
    /// A storage backend: by prefix (with the `latest.json` fallback) or an explicit key.
    Storage {
        /// The storage.
        storage: Arc<Storage>,
        /// `--prefix`.
        prefix: Option<String>,
        /// `--manifest-key`.
        manifest_key: Option<String>,
    },
    /// A manifest URL; chunks resolve relative to it, with its query string.
    Http {
        /// `--manifest-url`.
        url: url::Url,
        /// `--header` pairs.
        headers: Vec<(String, String)>,
    },
    /// A local manifest file; chunks under `<dir>/chunks/`.
    File(PathBuf),
}

/// Options of a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Expected image id.
    pub image_id: Option<String>,
    /// Expected version (and, with a prefix, which version to verify).
    pub image_version: Option<String>,
    /// Chunks checked at once.
    pub concurrency: usize,
    /// Attempts per HTTP download.
    pub retries: usize,
    /// Largest accepted chunk count.
    pub max_chunks: u64,
    /// Verify only this many random chunks plus the last one.
    pub chunk_sample: Option<u64>,
    /// Seed of the sample.
    pub chunk_sample_seed: Option<u64>,
}

/// One bad chunk.
#[derive(Debug, Clone, Serialize)]
pub struct BadChunk {
    /// Chunk index.
    pub index: u64,
    /// Object key or URL.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Image id from the manifest.
    pub image_id: String,
    /// Version from the manifest.
    pub version: String,
    /// Where the manifest was.
    pub manifest: String,
    /// Chunks checked.
    pub checked_chunks: u64,
    /// Chunks in the manifest.
    pub total_chunks: u64,
    /// Bytes checked.
    pub checked_bytes: u64,
    /// Notes (missing meta.json, the pointer checked, ...).
    pub notes: Vec<String>,
    /// Every bad chunk found.
    pub bad_chunks: Vec<BadChunk>,
    /// Seconds taken.
    pub seconds: f64,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.bad_chunks.is_empty()
    }
}

impl VerifySource {
    /// Where the manifest is, for the resolver.
    fn locator(self, options: &VerifyOptions) -> Result<Locator> {
        Ok(match self {
            VerifySource::Storage {
                storage,
                prefix,
                manifest_key,
            } => match (prefix, manifest_key) {
                (Some(_), Some(_)) => {
                    invalid!("--prefix and --manifest-key are mutually exclusive")
                }
                (None, None) => invalid!("verifying from storage needs --prefix or --manifest-key"),
                (None, Some(key)) => Locator::Key { storage, key },
                (Some(prefix), None) => Locator::Prefix {
                    storage,
                    prefix,
                    image_id: options.image_id.clone(),
                    version: options.image_version.clone(),
                },
            },
            VerifySource::Http { url, headers } => {
                Locator::Url(HttpSource::new(url, headers, options.retries)?)
            }
            VerifySource::File(path) => Locator::File(path),
        })
    }
}

impl VerifyOptions {
    fn validate(&self) -> Result<()> {
        if self.concurrency == 0 {
            invalid!("--concurrency must be at least 1");
        }
        if self.retries == 0 {
            invalid!("--retries must be at least 1");
        }
        if self.max_chunks == 0 || self.max_chunks > 100_000_000 {
            invalid!("--max-chunks must be between 1 and 100000000");
        }
        if self.chunk_sample_seed.is_some() && self.chunk_sample.is_none() {
            invalid!("--chunk-sample-seed needs --chunk-sample");
        }
        Ok(())
    }
}

/// Picks `n` random chunk indices below `count - 1` (Floyd's algorithm) plus the last one,
/// ascending; all chunks when `n + 1 >= count`.
pub fn sample_indices(count: u64, n: Option<u64>, seed: Option<u64>) -> Vec<u64> {
    let Some(n) = n.filter(|n| n.saturating_add(1) < count) else {
        return (0..count).collect();
    };
    let mut rng = seed.map(fastrand::Rng::with_seed).unwrap_or_default();
    let range = count - 1;
    let mut chosen = std::collections::BTreeSet::new();
    for j in (range - n)..range {
        let t = rng.u64(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.insert(count - 1);
    chosen.into_iter().collect()
}

/// Verifies a published image.
pub async fn verify(source: VerifySource, options: &VerifyOptions) -> Result<VerifyReport> {
    options.validate()?;
    let started = Instant::now();
    let limits = ManifestLimits {
        max_chunks: options.max_chunks,
    };
    let mut notes = Vec::new();
    let resolved = resolve(source.locator(options)?, limits).await?;
    let manifest = &resolved.manifest;
    if let Some(id) = &options.image_id {
        if &manifest.image_id != id {
            invalid!(
                "manifest imageId is '{}', expected '{id}'",
                manifest.image_id
            );
        }
    }
    if let Some(version) = &options.image_version {
        if &manifest.version != version {
            invalid!(
                "manifest version is '{}', expected '{version}'",
                manifest.version
            );
        }
    }
    match resolved.source.get(META_NAME, MAX_LATEST_BYTES).await? {
        Some(bytes) => {
            Meta::parse(&bytes)?.check_against(manifest)?;
            notes.push("meta.json agrees with the manifest".to_string());
        }
        None => notes.push("meta.json not found; skipped".to_string()),
    }
    notes.extend(resolved.check_pointer().await?);

    let indices = sample_indices(
        manifest.chunk_count,
        options.chunk_sample,
        options.chunk_sample_seed,
    );
    let results: Vec<(u64, Result<u64, BadChunk>)> = stream::iter(indices)
        .map(|index| {
            let resolved = &resolved;
            async move { (index, check_chunk(resolved, index).await) }
        })
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let mut report = VerifyReport {
        image_id: manifest.image_id.clone(),
        version: manifest.version.clone(),
        manifest: resolved.location.clone(),
        checked_chunks: 0,
        total_chunks: manifest.chunk_count,
        checked_bytes: 0,
        notes,
        bad_chunks: Vec::new(),
        seconds: 0.0,
    };
    for (_, result) in results {
        match result {
            Ok(bytes) => {
                report.checked_chunks += 1;
                report.checked_bytes += bytes;
            }
            Err(bad) => report.bad_chunks.push(bad),
        }
    }
    report.bad_chunks.sort_by_key(|b| b.index);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads chunk `index` and checks its size and digest against the manifest.
async fn check_chunk(resolved: &Resolved, index: u64) -> Result<u64, BadChunk> {
    let manifest = &resolved.manifest;
    let name = manifest.chunk_name(index);
    let bad = |problem: String| BadChunk {
        index,
        key: resolved.source.location(&name),
        problem,
    };
    let digest = manifest.chunk_sha256(index);
    let expected = ExpectedChunk {
        len: manifest.chunk_len(index),
        sha256: digest.as_deref(),
    };
    let bytes = match resolved.source.get(&name, expected.len).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(bad("missing (not found)".to_string())),
        Err(e) => return Err(bad(e.chain())),
    };
    expected.check(&bytes).map_err(|m| bad(m.to_string()))?;
    Ok(expected.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_seeded_distinct_and_include_the_last_chunk() {
        let a = sample_indices(100, Some(10), Some(7));
        assert_eq!(a, sample_indices(100, Some(10), Some(7)));
        assert_eq!(a.len(), 11);
        assert_eq!(*a.last().unwrap(), 99);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(5, Some(4), None), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_indices(5, Some(0), None), vec![4]);
        assert_eq!(sample_indices(3, None, None), vec![0, 1, 2]);
    }
}
