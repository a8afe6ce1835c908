//! How a publish reports progress: the caller decides how to show it (a bar, log lines,
//! nothing).

/// Receives a publish's progress. Called from many tasks at once.
pub trait Progress: Send + Sync {
    /// The whole-disk hashing pass starts over `total` bytes.
    fn start_hashing(&self, total: u64);
    /// `bytes` more were hashed in the hashing pass.
    fn hashed(&self, bytes: u64);
    /// The upload pass starts: `total` bytes in `chunks` chunks to `storage` under `prefix`.
    fn start_upload(&self, total: u64, chunks: u64, prefix: &str, storage: &str);
    /// One chunk of `bytes` was stored (or found already stored).
    fn chunk_done(&self, bytes: u64);
    /// The upload pass ended.
    fn finish_upload(&self);
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start_hashing(&self, _total: u64) {}
    fn hashed(&self, _bytes: u64) {}
    fn start_upload(&self, _total: u64, _chunks: u64, _prefix: &str, _storage: &str) {}
    fn chunk_done(&self, _bytes: u64) {}
    fn finish_upload(&self) {}
}
