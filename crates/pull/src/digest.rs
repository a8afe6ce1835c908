//! The sha256 of the whole disk, computed while the pull runs: chunks are fed in order to a
//! hashing thread, so the finished file is never read back.
//!
//! Zero chunks are hashed from a static buffer of zeros (never read from the holes); chunks an
//! interrupted pull had written are read back from the part, the only bytes not in memory.

use crate::{Error, Result};
use aero_chunked::format::hash_zeros;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One chunk's bytes, as the hasher receives them.
pub(crate) enum Piece {
    /// Bytes in memory.
    Data(Vec<u8>),
    /// `len` zeros.
    Zeros(u64),
    /// `len` bytes at `offset` of the part, written by an earlier pull.
    Written { offset: u64, len: u64 },
}

/// The hashing thread and the queue to it.
pub(crate) struct DiskHasher {
    queue: mpsc::Sender<Piece>,
    thread: std::thread::JoinHandle<Result<String>>,
}

impl DiskHasher {
    /// Starts the thread; at most `queue` pieces wait for it. `part` is read for
    /// [`Piece::Written`]; `name` is its path, for messages.
    pub(crate) fn start(part: Arc<File>, name: String, queue: usize) -> Result<DiskHasher> {
        let (tx, mut rx) = mpsc::channel::<Piece>(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("aero-pull-digest".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut buf = Vec::new();
                while let Some(piece) = rx.blocking_recv() {
                    match piece {
                        Piece::Data(bytes) => hasher.update(&bytes),
                        Piece::Zeros(len) => hash_zeros(&mut hasher, len),
                        Piece::Written { offset, len } => {
                            buf.resize(len as usize, 0);
                            part.read_exact_at(&mut buf, offset)
                                .map_err(|e| Error::io(format!("reading {name}"), e))?;
                            hasher.update(&buf);
                        }
                    }
                }
                Ok(hex::encode(hasher.finalize()))
            })
            .map_err(|e| Error::io("starting the digest thread", e))?;
        Ok(DiskHasher { queue: tx, thread })
    }

    /// Hands the next chunk (in disk order) to the thread; waits while the queue is full.
    pub(crate) async fn push(&self, piece: Piece) -> Result<()> {
        if self.queue.send(piece).await.is_err() {
            // The thread stopped early: its error is reported by `finish`.
            return Err(Error::Invalid("the disk digest thread stopped".into()));
        }
        Ok(())
    }

    /// The digest of every piece pushed, lowercase hex.
    pub(crate) async fn finish(self) -> Result<String> {
        drop(self.queue);
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .ok()
            .and_then(|joined| joined.ok())
            .unwrap_or_else(|| Err(Error::Invalid("the disk digest thread failed".into())))
    }
}
