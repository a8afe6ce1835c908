//! A published image exported lazily: each chunk is fetched when a read first needs it,
//! checked against the manifest's size and sha256 before any of its bytes are used (a bad
//! chunk is fetched again, then the read fails), and kept in a bounded in-memory cache whose
//! placeholders make concurrent reads of one chunk fetch it once, and in the shared on-disk
//! [`ChunkCache`] (content-addressed, so a new version reuses every unchanged chunk). Zero chunks are never
//! fetched and are holes in block status. Sequential reads are followed by a bounded
//! readahead.

use crate::export::{check_range, merge_extents, Export, ExportError};
use crate::metrics::Metrics;
use aero_chunk_cache::ChunkCache;
use aero_chunked::format::{zeros_sha256_hex, Manifest};
use aero_chunked::source::Source;
use aero_chunked::store::ExpectedChunk;
use aero_plugin_api::{Extent, ExtentKind};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How chunks are fetched and kept. [`ChunkedSettings::default`] is the one table of defaults.
#[derive(Debug, Clone)]
pub struct ChunkedSettings {
    /// Chunks read ahead of a sequential reader (0 = none).
    pub readahead: u64,
    /// Chunks fetched at once.
    pub concurrency: usize,
    /// Bytes of chunks kept in memory.
    pub memory_cache_bytes: u64,
    /// Fetches of a chunk before a read of it fails (a chunk that fails verification is
    /// fetched again).
    pub attempts: usize,
}

impl Default for ChunkedSettings {
    fn default() -> Self {
        ChunkedSettings {
            readahead: 8,
            concurrency: 8,
            memory_cache_bytes: 256 * 1024 * 1024,
            attempts: 3,
        }
    }
}

/// The chunks of one published image as an export.
pub struct ChunkedExport {
    inner: Arc<Inner>,
}

struct Inner {
    manifest: Manifest,
    source: Source,
    /// The sha256 of an all-zero chunk of each size the image has.
    zero_digests: Vec<(u64, String)>,
    memory: quick_cache::sync::Cache<u64, Bytes, ChunkWeight>,
    disk: Option<Arc<ChunkCache>>,
    fetches: Semaphore,
    settings: ChunkedSettings,
    metrics: Arc<Metrics>,
    /// Where the last read ended: a read starting near it is sequential.
    last_end: AtomicU64,
    /// One past the last chunk readahead has been started for.
    readahead_to: AtomicU64,
}

/// Cached chunks weigh their length.
#[derive(Clone)]
struct ChunkWeight;

impl quick_cache::Weighter<u64, Bytes> for ChunkWeight {
    fn weight(&self, _: &u64, chunk: &Bytes) -> u64 {
        chunk.len() as u64
    }
}

impl ChunkedExport {
    /// Exports the image of `manifest`, whose chunks are in `source`, sharing `disk` (when
    /// given) with other readers of the cache.
    pub fn new(
        manifest: Manifest,
        source: Source,
        disk: Option<Arc<ChunkCache>>,
        settings: ChunkedSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        if settings.concurrency == 0 || settings.attempts == 0 {
            return Err("concurrency and attempts must be at least 1".into());
        }
        let last_len = manifest.chunk_len(manifest.chunk_count - 1);
        let mut sizes = vec![manifest.chunk_size, last_len];
        sizes.dedup();
        let zero_digests = sizes
            .into_iter()
            .map(|len| (len, zeros_sha256_hex(len)))
            .collect();
        let items = (settings.memory_cache_bytes / manifest.chunk_size).max(1) as usize;
        Ok(ChunkedExport {
            inner: Arc::new(Inner {
                memory: quick_cache::sync::Cache::with_weighter(
                    items,
                    settings.memory_cache_bytes,
                    ChunkWeight,
                ),
                disk,
                fetches: Semaphore::new(settings.concurrency),
                zero_digests,
                manifest,
                source,
                settings,
                metrics,
                last_end: AtomicU64::new(u64::MAX),
                readahead_to: AtomicU64::new(0),
            }),
        })
    }
}

impl Inner {
    /// Whether chunk `index` is all zeros: marked so, or listed with the zero digest.
    fn is_zero(&self, index: u64) -> bool {
        let entry = self
            .manifest
            .chunks
            .as_ref()
            .and_then(|c| c.get(index as usize));
        if entry.is_some_and(|e| e.zero) {
            return true;
        }
        let len = self.manifest.chunk_len(index);
        self.manifest.chunk_sha256(index).is_some_and(|digest| {
            self.zero_digests
                .iter()
                .any(|(size, zero)| *size == len && *zero == digest)
        })
    }

    /// The chunks `first..=last` of a byte range.
    fn chunks_of(&self, offset: u64, length: u64) -> std::ops::RangeInclusive<u64> {
        let size = self.manifest.chunk_size;
        offset / size..=(offset + length - 1) / size
    }

    /// Chunk `index`, verified: from memory, or fetched once however many ask at once.
    async fn chunk(&self, index: u64) -> Result<Bytes, ExportError> {
        match self.memory.get_value_or_guard_async(&index).await {
            Ok(bytes) => {
                Metrics::add(&self.metrics.memory_cache_hits, 1);
                Ok(bytes)
            }
            Err(guard) => {
                let bytes = self.fetch(index).await?;
                let _ = guard.insert(bytes.clone());
                Ok(bytes)
            }
        }
    }

    /// Chunk `index` from the on-disk cache (which returns only bytes of the digest asked
    /// for), else fetched from the source and then cached.
    async fn fetch(&self, index: u64) -> Result<Bytes, ExportError> {
        let digest = self.manifest.chunk_sha256(index);
        let (Some(disk), Some(digest)) = (&self.disk, &digest) else {
            return self.fetch_from_source(index).await;
        };
        let (cache, key) = (Arc::clone(disk), digest.clone());
        match tokio::task::spawn_blocking(move || cache.get(&key)).await {
            Ok(Ok(Some(bytes))) => {
                Metrics::add(&self.metrics.disk_cache_hits, 1);
                return Ok(Bytes::from(bytes));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("reading chunk {index} from the chunk cache: {e}"),
            Err(e) => tracing::warn!("reading chunk {index} from the chunk cache: {e}"),
        }
        let bytes = self.fetch_from_source(index).await?;
        let (cache, key, value) = (Arc::clone(disk), digest.clone(), bytes.clone());
        // Written in the background: the read does not wait for the cache.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cache.put(&key, &value) {
                tracing::warn!("writing chunk {index} to the chunk cache: {e}");
            }
        });
        Ok(bytes)
    }

    /// Fetches chunk `index` and checks it, trying again as often as the settings allow.
    async fn fetch_from_source(&self, index: u64) -> Result<Bytes, ExportError> {
        let _slot = self.fetches.acquire().await.map_err(|_| closed())?;
        let name = self.manifest.chunk_name(index);
        let len = self.manifest.chunk_len(index);
        let digest = self.manifest.chunk_sha256(index);
        let attempts = self.settings.attempts;
        let mut problem = String::new();
        for attempt in 1..=attempts {
            match self.source.get(&name, len).await {
                Ok(Some(bytes)) => match verify(bytes, len, digest.clone()).await? {
                    Ok(bytes) => {
                        Metrics::add(&self.metrics.chunks_fetched, 1);
                        Metrics::add(&self.metrics.bytes_fetched, len);
                        return Ok(bytes);
                    }
                    Err(mismatch) => {
                        Metrics::add(&self.metrics.verification_failures, 1);
                        problem = mismatch;
                    }
                },
                Ok(None) => problem = "not found".into(),
                Err(e) => problem = e.chain(),
            }
            let location = self.source.location(&name);
            tracing::warn!(
                "chunk {index} ({location}): {problem} (attempt {attempt} of {attempts})"
            );
            if attempt < attempts {
                tokio::time::sleep(Duration::from_millis(200 << (attempt - 1).min(5))).await;
            }
        }
        Err(ExportError::Read(format!(
            "chunk {index} ({}): {problem} after {attempts} attempts",
            self.source.location(&name)
        )))
    }

    /// After a read of `offset..end`: when it continues the previous one, starts fetching
    /// the next chunks, at most `readahead` beyond the read.
    fn read_ahead(self: &Arc<Self>, offset: u64, end: u64) {
        let previous = self.last_end.swap(end, Ordering::Relaxed);
        let window = self.settings.readahead;
        // Clients keep several reads in flight, which arrive a little out of order: a read
        // within the window of the previous one's end continues it.
        if window == 0 || previous.abs_diff(offset) > window * self.manifest.chunk_size {
            return;
        }
        let next = end.div_ceil(self.manifest.chunk_size);
        let to = (next + window).min(self.manifest.chunk_count);
        let scheduled = self.readahead_to.load(Ordering::Relaxed);
        let from = if (next..=to).contains(&scheduled) {
            scheduled
        } else {
            next
        };
        self.readahead_to.store(to, Ordering::Relaxed);
        for index in from..to {
            self.prefetch_chunk(index);
        }
    }

    /// Fetches chunk `index` in the background unless it is a zero chunk or in memory.
    fn prefetch_chunk(self: &Arc<Self>, index: u64) {
        if self.is_zero(index) || self.memory.contains_key(&index) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            Metrics::add(&this.metrics.chunks_prefetched, 1);
            // A failure is reported again by the read that needs the chunk.
            let _ = this.chunk(index).await;
        });
    }
}

/// Checks a fetched chunk on the blocking pool: the bytes, or what is wrong with them.
async fn verify(
    bytes: Vec<u8>,
    len: u64,
    digest: Option<String>,
) -> Result<Result<Bytes, String>, ExportError> {
    tokio::task::spawn_blocking(move || {
        let expected = ExpectedChunk {
            len,
            sha256: digest.as_deref(),
        };
        match expected.check(&bytes) {
            Ok(()) => Ok(Bytes::from(bytes)),
            Err(mismatch) => Err(mismatch.to_string()),
        }
    })
    .await
    .map_err(|e| ExportError::Read(format!("verification task failed: {e}")))
}

fn closed() -> ExportError {
    ExportError::Read("the export is closing".into())
}

#[async_trait]
impl Export for ChunkedExport {
    fn size(&self) -> u64 {
        self.inner.manifest.total_size
    }

    async fn read(&self, offset: u64, length: usize) -> Result<Vec<u8>, ExportError> {
        let inner = &self.inner;
        check_range(offset, length as u64, self.size())?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let end = offset + length as u64;
        let indices = inner.chunks_of(offset, length as u64);
        let chunks = futures::future::try_join_all(indices.clone().map(|index| async move {
            if inner.is_zero(index) {
                Metrics::add(&inner.metrics.zero_chunks, 1);
                Ok(None)
            } else {
                inner.chunk(index).await.map(Some)
            }
        }))
        .await?;
        let mut out = Vec::with_capacity(length);
        let size = inner.manifest.chunk_size;
        for (index, chunk) in indices.zip(chunks) {
            let base = index * size;
            let from = (offset.max(base) - base) as usize;
            let to = (end.min(base + inner.manifest.chunk_len(index)) - base) as usize;
            match chunk {
                Some(bytes) => out.extend_from_slice(&bytes[from..to]),
                None => out.resize(out.len() + (to - from), 0),
            }
        }
        inner.read_ahead(offset, end);
        Ok(out)
    }

    async fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>, ExportError> {
        check_range(offset, length, self.size())?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let size = inner.manifest.chunk_size;
        let end = offset + length;
        Ok(merge_extents(inner.chunks_of(offset, length).map(
            |index| {
                let start = offset.max(index * size);
                let stop = end.min(index * size + inner.manifest.chunk_len(index));
                let kind = if inner.is_zero(index) {
                    ExtentKind::Zero
                } else {
                    ExtentKind::Data
                };
                Extent::new(start, stop - start, kind)
            },
        )))
    }

    fn prefetch(&self, offset: u64, length: u64) {
        if length == 0 || check_range(offset, length, self.size()).is_err() {
            return;
        }
        for index in self.inner.chunks_of(offset, length) {
            self.inner.prefetch_chunk(index);
        }
    }
}
