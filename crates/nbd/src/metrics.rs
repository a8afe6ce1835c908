//! The server's counters, shared by the protocol and the chunked export, and their snapshot
//! (the `--json` summary).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters; every field counts up from zero.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at the connection cap.
    pub connections_refused: AtomicU64,
    /// Requests received in the transmission phase.
    pub requests: AtomicU64,
    /// Requests answered with an error.
    pub request_errors: AtomicU64,
    /// Bytes sent in successful read replies.
    pub bytes_served: AtomicU64,
    /// Chunks fetched from the source (after verification).
    pub chunks_fetched: AtomicU64,
    /// Bytes of those chunks.
    pub bytes_fetched: AtomicU64,
    /// Chunk reads answered by the in-memory cache.
    pub memory_cache_hits: AtomicU64,
    /// Chunk reads answered by the on-disk cache.
    pub disk_cache_hits: AtomicU64,
    /// Zero chunks read without fetching.
    pub zero_chunks: AtomicU64,
    /// Fetched chunks whose size or sha256 did not match the manifest.
    pub verification_failures: AtomicU64,
    /// Chunks fetched by readahead or `NBD_CMD_CACHE` before a read asked for them.
    pub chunks_prefetched: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`Metrics::connections`].
    pub connections: u64,
    /// See [`Metrics::connections_refused`].
    pub connections_refused: u64,
    /// See [`Metrics::requests`].
    pub requests: u64,
    /// See [`Metrics::request_errors`].
    pub request_errors: u64,
    /// See [`Metrics::bytes_served`].
    pub bytes_served: u64,
    /// See [`Metrics::chunks_fetched`].
    pub chunks_fetched: u64,
    /// See [`Metrics::bytes_fetched`].
    pub bytes_fetched: u64,
    /// Memory and disk cache hits.
    pub cache_hits: u64,
    /// See [`Metrics::memory_cache_hits`].
    pub memory_cache_hits: u64,
    /// See [`Metrics::disk_cache_hits`].
    pub disk_cache_hits: u64,
    /// See [`Metrics::zero_chunks`].
    pub zero_chunks: u64,
    /// See [`Metrics::verification_failures`].
    pub verification_failures: u64,
    /// See [`Metrics::chunks_prefetched`].
    pub chunks_prefetched: u64,
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections: get(&self.connections),
            connections_refused: get(&self.connections_refused),
            requests: get(&self.requests),
            request_errors: get(&self.request_errors),
            bytes_served: get(&self.bytes_served),
            chunks_fetched: get(&self.chunks_fetched),
            bytes_fetched: get(&self.bytes_fetched),
            cache_hits: get(&self.memory_cache_hits) + get(&self.disk_cache_hits),
            memory_cache_hits: get(&self.memory_cache_hits),
            disk_cache_hits: get(&self.disk_cache_hits),
            zero_chunks: get(&self.zero_chunks),
            verification_failures: get(&self.verification_failures),
            chunks_prefetched: get(&self.chunks_prefetched),
        }
    }
}
