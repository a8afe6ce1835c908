//! The `sha256-<whole disk>` version: one read of the disk, the stream hashed in order on its
//! own thread while the chunks are hashed beside it. Where copies are cheap links (objects are
//! local files), each data chunk is also written under a staging prefix in the same pass, so
//! the upload pass that follows, once the version and so the keys are known, links the staged
//! chunks into place instead of reading the disk a second time.

use super::base::BaseChunks;
use super::buffers::BufferPool;
use super::{is_zero_range, ChunkDigest, ZeroDigests};
use crate::format::hash_zeros;
use crate::layout::chunk_key;
use crate::progress::Progress;
use crate::store::put_deferred;
use crate::{Error, Result};
use aero_plugin_api::backend::{ObjectMeta, Storage};
use aero_plugin_api::VirtualDisk;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Data chunks read ahead of the chunk hashers (each holds one chunk buffer).
const READ_AHEAD: usize = 2;

/// Where data chunks are written before the version is known.
#[derive(Clone)]
pub(super) struct Staging {
    storage: Arc<Storage>,
    /// Key prefix of the staged chunks, unique to this publish.
    prefix: String,
    /// The metadata of a chunk object (its digest is added per chunk).
    meta: ObjectMeta,
}

impl Staging {
    /// Staging for a publish under `prefix` to `storage`, when it pays: where objects are
    /// local files, whose copies are hard links.
    pub fn new(storage: &Arc<Storage>, prefix: &str, meta: ObjectMeta) -> Option<Self> {
        if storage.local_files.is_none() || storage.copies.is_none() {
            return None;
        }
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Some(Staging {
            storage: Arc::clone(storage),
            prefix: format!(
                "{}.publishing-{}-{unique}/",
                crate::layout::normalize_prefix(prefix),
                std::process::id()
            ),
            meta,
        })
    }

    /// The staged key of chunk `index`.
    pub fn key(&self, index: u64) -> String {
        chunk_key(&self.prefix, index)
    }

    /// Removes every staged object; an error when some could not be removed.
    pub async fn remove(&self) -> std::result::Result<(), String> {
        self.storage
            .operator
            .delete_with(&self.prefix)
            .recursive(true)
            .await
            .map_err(|e| {
                format!(
                    "could not remove the staged chunks under {}: {e}",
                    self.prefix
                )
            })
    }
}

/// The whole disk's digest and every chunk's.
pub(super) struct DiskDigest {
    /// `sha256-<hex>`.
    pub version: String,
    /// Per chunk, in order.
    pub chunks: Vec<ChunkDigest>,
    /// Bytes read from the disk.
    pub read: u64,
}

/// What the chunk hashers get from the reader, in disk order.
enum Pending {
    /// A data chunk's bytes.
    Data(u64, Bytes),
    /// The length of a zero chunk, which is never read.
    Zero(u64),
}

/// Reads `disk` once in chunks of `chunk_size`: the reader thread hashes the stream (zero
/// chunks fed from one shared buffer, never read) while up to `concurrency` chunks are hashed
/// and, with `staging`, written under the staging prefix, unless `base` holds the same bytes.
pub(super) async fn hash_disk(
    disk: Arc<dyn VirtualDisk>,
    chunk_size: u64,
    concurrency: usize,
    zero_digests: Arc<ZeroDigests>,
    staging: Option<&Staging>,
    base: Option<&BaseChunks>,
    progress: Arc<dyn Progress>,
) -> Result<DiskDigest> {
    let total = disk.capacity();
    progress.start_hashing(total);
    let (tx, rx) = tokio::sync::mpsc::channel::<Pending>(READ_AHEAD);
    let buffers = BufferPool::new(chunk_size as usize);
    let reader = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        let mut whole = Sha256::new();
        let mut read = 0;
        for index in 0..total.div_ceil(chunk_size) {
            let offset = index * chunk_size;
            let len = chunk_size.min(total - offset);
            if is_zero_range(disk.as_ref(), offset, len)? {
                hash_zeros(&mut whole, len);
                progress.hashed(len);
                if tx.blocking_send(Pending::Zero(len)).is_err() {
                    break;
                }
                continue;
            }
            let mut buf = buffers.take(len as usize);
            disk.read_at(offset, buf.as_mut_slice()).map_err(|e| {
                Error::invalid(format!("reading chunk {index} at offset {offset}: {e}"))
            })?;
            read += len;
            let bytes = buf.into_bytes();
            // Sent first, so the chunk is hashed (and staged) while the stream hashes the same
            // buffer.
            if tx
                .blocking_send(Pending::Data(index, bytes.clone()))
                .is_err()
            {
                break;
            }
            whole.update(&bytes);
            progress.hashed(len);
        }
        Ok((format!("sha256-{}", hex::encode(whole.finalize())), read))
    });
    let pending = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    let zero_digests = zero_digests.as_ref();
    let chunks: Result<Vec<ChunkDigest>> = pending
        .map(|pending| async move {
            match pending {
                Pending::Zero(len) => Ok(ChunkDigest {
                    sha256: zero_digests.get(len),
                    zero: true,
                    staged: false,
                }),
                Pending::Data(index, bytes) => hash_chunk(index, bytes, staging, base).await,
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await;
    let read = reader
        .await
        .map_err(|e| Error::invalid(format!("hashing the disk: {e}")))?;
    // A read error ends the stream early: it is the error to report.
    let (version, read) = read?;
    Ok(DiskDigest {
        version,
        chunks: chunks?,
        read,
    })
}

/// Hashes data chunk `index` on a blocking thread, then stages it unless the base holds it.
async fn hash_chunk(
    index: u64,
    bytes: Bytes,
    staging: Option<&Staging>,
    base: Option<&BaseChunks>,
) -> Result<ChunkDigest> {
    let hashed = bytes.clone();
    let sha256 = tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&hashed)))
        .await
        .map_err(|e| Error::invalid(format!("chunk hasher stopped: {e}")))?;
    let staging = staging.filter(|_| base.and_then(|b| b.find(&sha256)).is_none());
    if let Some(staging) = staging {
        let meta = ObjectMeta {
            sha256: Some(sha256.clone()),
            ..staging.meta.clone()
        };
        put_deferred(&staging.storage, &staging.key(index), bytes, &meta).await?;
    }
    Ok(ChunkDigest {
        sha256,
        zero: false,
        staged: staging.is_some(),
    })
}
