//! The pull itself: plan, fetch in parallel, write, finish.

use crate::digest::{DiskHasher, Piece};
use crate::fetch::fetch_chunk;
use crate::plan::{plan, ChunkFate};
use crate::state::{is_complete, written_chunks, Part};
use crate::{Error, Result};
use aero_chunk_cache::ChunkCache;
use aero_chunked::format::{sha256_hex, Manifest};
use aero_chunked::resolve::Resolved;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The prefix of versions that are the sha256 of the whole disk.
const DISK_DIGEST_PREFIX: &str = "sha256-";

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Chunks fetched at once: at most this many chunk buffers are alive, and as many more
    /// waiting for the disk digest's thread when there is a digest to check.
    pub concurrency: usize,
    /// Fetches of a chunk whose bytes are wrong, the first included.
    pub attempts: usize,
    /// The shared chunk cache, if used.
    pub cache: Option<Arc<ChunkCache>>,
    /// Report what would be done; write nothing.
    pub dry_run: bool,
    /// The expected sha256 of the whole disk (a catalog's), checked like a `sha256-` version.
    pub disk_sha256: Option<String>,
}

/// Receives a pull's progress. Called from many tasks at once.
pub trait PullProgress: Send + Sync {
    /// The pull starts: `total` guest bytes in `chunks` chunks.
    fn start(&self, total: u64, chunks: u64);
    /// One chunk of `bytes` is done.
    fn chunk_done(&self, bytes: u64, fate: ChunkFate);
    /// Every chunk is written; the disk is being flushed and checked.
    fn finishing(&self);
}

/// What a pull did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullSummary {
    /// Image id.
    pub image_id: String,
    /// Version.
    pub version: String,
    /// The output file.
    pub out: String,
    /// Guest-visible bytes.
    pub total_size: u64,
    /// Chunks in the manifest.
    pub chunk_count: u64,
    /// Chunks fetched from the source.
    pub chunks_downloaded: u64,
    /// Bytes fetched from the source.
    pub bytes_downloaded: u64,
    /// Chunks copied from the cache.
    pub chunks_reused: u64,
    /// Bytes copied from the cache.
    pub bytes_reused: u64,
    /// Chunks never fetched because they are zeros.
    pub chunks_zero: u64,
    /// Bytes of those chunks.
    pub bytes_zero: u64,
    /// Chunks an interrupted pull had written already.
    pub chunks_resumed: u64,
    /// Bytes of those chunks.
    pub bytes_resumed: u64,
    /// `out` already held this version: nothing was done.
    pub up_to_date: bool,
    /// Nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// The whole disk was checked against its `sha256-` version.
    pub disk_digest_checked: bool,
    /// Chunks that could not be stored in the cache (the pull goes on without them).
    pub cache_errors: u64,
    /// Seconds taken.
    pub seconds: f64,
}

impl PullSummary {
    fn count(&mut self, fate: ChunkFate, bytes: u64) {
        let (chunks, total) = match fate {
            ChunkFate::Zero => (&mut self.chunks_zero, &mut self.bytes_zero),
            ChunkFate::Resumed => (&mut self.chunks_resumed, &mut self.bytes_resumed),
            ChunkFate::Reused => (&mut self.chunks_reused, &mut self.bytes_reused),
            ChunkFate::Downloaded => (&mut self.chunks_downloaded, &mut self.bytes_downloaded),
        };
        *chunks += 1;
        *total += bytes;
    }
}

/// The identity of a manifest: the sha256 of its canonical JSON.
fn identity(manifest: &Manifest) -> String {
    sha256_hex(&manifest.to_json())
}

/// Pulls the image `resolved` names into `out` (a sparse raw file).
pub async fn pull(
    resolved: &Resolved,
    out: &Path,
    options: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<PullSummary> {
    if options.concurrency == 0 {
        return Err(Error::Invalid("--concurrency must be at least 1".into()));
    }
    if options.attempts == 0 {
        return Err(Error::Invalid("--retries must be at least 1".into()));
    }
    let started = Instant::now();
    let manifest = &resolved.manifest;
    let identity = identity(manifest);
    let mut summary = PullSummary {
        image_id: manifest.image_id.clone(),
        version: manifest.version.clone(),
        out: out.display().to_string(),
        total_size: manifest.total_size,
        chunk_count: manifest.chunk_count,
        dry_run: options.dry_run,
        ..PullSummary::default()
    };
    if is_complete(out, &identity, manifest.total_size) {
        summary.up_to_date = true;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if options.dry_run {
        let written = written_chunks(out, &identity, manifest.total_size);
        for (index, fate) in plan(manifest, &written, options.cache.as_deref())
            .into_iter()
            .enumerate()
        {
            summary.count(fate, manifest.chunk_len(index as u64));
        }
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let (part, written) = Part::open(out, &identity, manifest.total_size)?;
    let fates = plan(manifest, &written, options.cache.as_deref());
    check_free_space(&part, manifest, &fates)?;
    progress.start(manifest.total_size, manifest.chunk_count);
    let expected = [
        manifest
            .version
            .strip_prefix(DISK_DIGEST_PREFIX)
            .map(|d| (d, "its version")),
        options.disk_sha256.as_deref().map(|d| (d, "the catalog")),
    ];
    let expected: Vec<_> = expected.into_iter().flatten().collect();
    let mut hasher = if expected.is_empty() {
        None
    } else {
        Some(DiskHasher::start(
            Arc::clone(part.file()),
            part.path().display().to_string(),
            options.concurrency,
        )?)
    };

    // With a disk digest to compute, chunks complete in disk order (up to `concurrency` in
    // flight), so it is computed as they arrive; without one, in any order, so a slow chunk
    // never holds back the fetches behind it.
    let part = Arc::new(part);
    let chunks = stream::iter(fates.into_iter().enumerate()).map(|(index, fate)| {
        let part = Arc::clone(&part);
        let index = index as u64;
        async move {
            match fate {
                ChunkFate::Zero | ChunkFate::Resumed => Ok((index, fate, None, false)),
                ChunkFate::Reused | ChunkFate::Downloaded => {
                    pull_chunk(resolved, &part, options, index, fate).await
                }
            }
        }
    });
    let mut done = match hasher {
        Some(_) => chunks.buffered(options.concurrency).left_stream(),
        None => chunks.buffer_unordered(options.concurrency).right_stream(),
    };
    while let Some((index, fate, bytes, cache_error)) = done.try_next().await? {
        let len = manifest.chunk_len(index);
        summary.count(fate, len);
        summary.cache_errors += u64::from(cache_error);
        progress.chunk_done(len, fate);
        if let Some(h) = &hasher {
            let piece = match (fate, bytes) {
                (ChunkFate::Zero, _) => Piece::Zeros(len),
                (_, Some(bytes)) => Piece::Data(bytes),
                (_, None) => Piece::Written {
                    offset: index * manifest.chunk_size,
                    len,
                },
            };
            if let Err(e) = h.push(piece).await {
                let h = hasher.take().expect("the hasher is running");
                return Err(h.finish().await.err().unwrap_or(e));
            }
        }
    }
    drop(done);

    progress.finishing();
    let part = Arc::into_inner(part).expect("every chunk task has ended");
    if let Some(h) = hasher {
        let actual = h.finish().await?;
        if let Some((digest, source)) = expected
            .iter()
            .find(|(d, _)| d.to_ascii_lowercase() != actual)
        {
            let at = part.path().display().to_string();
            part.discard();
            return Err(Error::Invalid(format!(
                "the pulled disk's sha256 is {actual}, but {source} says {digest} (version {}): \
                 the manifest does not describe this disk ({at} removed)",
                manifest.version
            )));
        }
        summary.disk_digest_checked = true;
    }
    tokio::task::spawn_blocking(move || part.finish())
        .await
        .map_err(|e| Error::Invalid(format!("the finishing thread failed: {e}")))??;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Gets chunk `index` from the cache or the source and writes it; returns what was done, the
/// bytes, and whether storing them in the cache failed.
async fn pull_chunk(
    resolved: &Resolved,
    part: &Arc<Part>,
    options: &PullOptions,
    index: u64,
    fate: ChunkFate,
) -> Result<(u64, ChunkFate, Option<Vec<u8>>, bool)> {
    let manifest = &resolved.manifest;
    let offset = index * manifest.chunk_size;
    let digest = manifest.chunk_sha256(index);
    let cache = options.cache.clone();
    if let (ChunkFate::Reused, Some(cache), Some(digest)) = (fate, &cache, &digest) {
        let (cache, digest, part) = (Arc::clone(cache), digest.clone(), Arc::clone(part));
        let hit = blocking(move || match cache.get(&digest) {
            Ok(Some(bytes)) => part.write_chunk(index, offset, &bytes).map(|_| Some(bytes)),
            // An unreadable entry is a miss: the chunk is downloaded.
            Ok(None) | Err(_) => Ok(None),
        })
        .await?;
        if let Some(bytes) = hit {
            return Ok((index, ChunkFate::Reused, Some(bytes), false));
        }
    }
    let name = manifest.chunk_name(index);
    let len = manifest.chunk_len(index);
    let bytes = fetch_chunk(
        &resolved.source,
        &name,
        index,
        len,
        digest.clone(),
        options.attempts,
    )
    .await?;
    let part = Arc::clone(part);
    let (bytes, cache_error) = blocking(move || {
        part.write_chunk(index, offset, &bytes)?;
        let cache_error = match (cache, digest) {
            (Some(cache), Some(digest)) => cache.put(&digest, &bytes).is_err(),
            _ => false,
        };
        Ok((bytes, cache_error))
    })
    .await?;
    Ok((index, ChunkFate::Downloaded, Some(bytes), cache_error))
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("a writing thread failed: {e}")))?
}

/// Fails early when the file system cannot hold the data still to be written.
fn check_free_space(part: &Part, manifest: &Manifest, fates: &[ChunkFate]) -> Result<()> {
    let needed: u64 = fates
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f, ChunkFate::Reused | ChunkFate::Downloaded))
        .map(|(i, _)| manifest.chunk_len(i as u64))
        .sum();
    let free = free_bytes(part.path()).map_err(|e| {
        Error::io(
            format!("checking free space for {}", part.path().display()),
            e,
        )
    })?;
    if needed > free {
        return Err(Error::Invalid(format!(
            "{} needs {needed} more bytes of data but its file system has {free} bytes free",
            part.path().display()
        )));
    }
    Ok(())
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs buffer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}
