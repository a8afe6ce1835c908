//! Publishing: cut a disk's guest-visible bytes into chunks and store them with the manifest,
//! meta and latest pointer, in the crash-safe order of SPEC Part 0.

mod base;
mod buffers;
mod disk_digest;

pub use base::Base;
use disk_digest::Staging;

use crate::error::invalid;
use crate::format::{
    manifest_version, ChunkEntry, Latest, Manifest, ManifestLimits, Meta, MANIFEST_VERSION_PREFIX,
    MAX_CHUNK_SIZE, MAX_MANIFEST_BYTES,
};
use crate::layout::{chunk_key, resolve_destination, Destination, DestinationRequest, ObjectKind};
use crate::progress::Progress;
use crate::store::{
    is_not_found, put_deferred, put_durable, read_limited, stat, sync, CacheControls, ExpectedChunk,
};
use crate::{Context, Error, Result};
use aero_plugin_api::backend::{ObjectMeta, Storage};
use aero_plugin_api::{ExtentKind, VirtualDisk};
use buffers::BufferPool;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Chunk counts above this are refused (ask for a larger chunk size).
pub const MAX_CHUNKS: u64 = crate::format::DEFAULT_MAX_CHUNKS;

/// How the version is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeVersion {
    /// `--image-version` or the prefix decide.
    #[default]
    None,
    /// `sha256-<digest of the whole disk>`.
    Sha256,
    /// `mh1-<digest of the geometry and every chunk's size and sha256>`
    /// ([`crate::format::manifest_version`]): it authenticates the manifest, and costs one
    /// hash per data chunk (zero chunks are never read).
    ManifestSha256,
}

/// Per-chunk digests in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// No digests.
    None,
    /// sha256 of every chunk.
    #[default]
    Sha256,
}

impl Checksum {
    /// The name `meta.json` records (`checksumAlgorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Checksum::None => "none",
            Checksum::Sha256 => "sha256",
        }
    }
}

/// Everything a publish needs besides the disk and the storage.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Key prefix.
    pub prefix: String,
    /// Explicit image id.
    pub image_id: Option<String>,
    /// Explicit version.
    pub image_version: Option<String>,
    /// Version computation.
    pub compute_version: ComputeVersion,
    /// Write `latest.json`.
    pub publish_latest: bool,
    /// Cache-Control values.
    pub cache_control: CacheControls,
    /// Chunk size.
    pub chunk_size: u64,
    /// Per-chunk digests.
    pub checksum: Checksum,
    /// Chunks in flight.
    pub concurrency: usize,
    /// Skip `meta.json`.
    pub no_meta: bool,
    /// File name recorded in `meta.json`.
    pub original_filename: String,
    /// The earlier version whose chunks are copied instead of uploaded.
    pub base: Base,
}

impl PublishPlan {
    /// Checks the options (SPEC 1.10 step 1).
    pub fn validate(&self) -> Result<()> {
        if self.chunk_size == 0 || self.chunk_size % 512 != 0 || self.chunk_size > MAX_CHUNK_SIZE {
            invalid!(
                "--chunk-size {} must be a positive multiple of 512 and at most {MAX_CHUNK_SIZE} (64 MiB)",
                self.chunk_size
            );
        }
        if self.concurrency == 0 {
            invalid!("--concurrency must be at least 1");
        }
        if self.compute_version == ComputeVersion::ManifestSha256
            && self.checksum != Checksum::Sha256
        {
            invalid!("--compute-version manifest-sha256 needs --checksum sha256: the version authenticates the chunk digests");
        }
        crate::layout::check_prefix(&self.prefix)?;
        self.cache_control.validate()
    }
}

/// The one-object summary of a publish (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PublishSummary {
    /// Image id.
    pub image_id: String,
    /// Version.
    pub version: String,
    /// Where the storage is.
    pub storage: String,
    /// Manifest key.
    pub manifest_key: String,
    /// Meta key, unless `--no-meta`.
    pub meta_key: Option<String>,
    /// Latest key, with `--publish-latest`.
    pub latest_key: Option<String>,
    /// Guest-visible size.
    pub total_size: u64,
    /// Chunk size.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Bytes read from the image.
    pub bytes_read: u64,
    /// Bytes uploaded (data chunks actually written; zero objects cost nothing).
    pub bytes_uploaded: u64,
    /// Chunks written with their bytes (counted in `bytes_uploaded`).
    pub uploaded_chunks: u64,
    /// Chunks copied inside the storage from the base version instead of uploaded.
    pub copied_chunks: u64,
    /// Bytes of the copied chunks.
    pub bytes_copied: u64,
    /// Chunks that are all zeros.
    pub zero_chunks: u64,
    /// Bytes of the all-zero chunks.
    pub zero_bytes: u64,
    /// Chunks already stored by an earlier run and skipped.
    pub skipped_chunks: u64,
    /// The version chunks were copied from, when a base was used.
    pub base_version: Option<String>,
    /// What did not go as asked but did not stop the publish (an unusable base).
    pub warnings: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Aborts a chunk task when its result is no longer wanted (another chunk failed), so a
/// failed publish leaves no task writing behind it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What happened to one chunk.
struct ChunkOutcome {
    entry: ChunkEntry,
    read: u64,
    stored: Stored,
}

/// How a chunk came to be stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Found stored already.
    Skipped,
    /// Written with its bytes.
    Uploaded,
    /// Copied from the base version.
    Copied,
    /// Made as a zero object, without bytes.
    ZeroObject,
}

/// Shared state of one publish.
struct Job {
    storage: Arc<Storage>,
    disk: Arc<dyn VirtualDisk>,
    plan: PublishPlan,
    destination: Destination,
    total_size: u64,
    precomputed: Option<Vec<ChunkDigest>>,
    zero_digests: Arc<ZeroDigests>,
    /// The manifest already stored for this version, whose chunks must not change.
    published: Option<Manifest>,
    /// No chunk of this version was stored when the publish began: none is looked up.
    fresh: bool,
    /// The chunks of the base version, by digest.
    base: Option<base::BaseChunks>,
    /// Where data chunks were written while the version was computed.
    staging: Option<Staging>,
    buffers: Arc<BufferPool>,
    progress: Arc<dyn Progress>,
}

/// The sha256 of an all-zero chunk, computed once per size.
#[derive(Default)]
struct ZeroDigests(Mutex<HashMap<u64, String>>);

impl ZeroDigests {
    fn get(&self, len: u64) -> String {
        let mut cache = self.0.lock().expect("zero digest cache poisoned");
        cache
            .entry(len)
            .or_insert_with(|| crate::format::zeros_sha256_hex(len))
            .clone()
    }
}

/// A chunk's digest and whether it is all zeros, known before uploading.
#[derive(Clone)]
struct ChunkDigest {
    sha256: String,
    zero: bool,
    /// Written under the staging prefix already ([`disk_digest::Staging`]).
    staged: bool,
}

/// Publishes `disk` to `storage` as `plan` says.
pub async fn publish(
    storage: Arc<Storage>,
    disk: Arc<dyn VirtualDisk>,
    plan: PublishPlan,
    progress: Arc<dyn Progress>,
) -> Result<PublishSummary> {
    plan.validate()?;
    let staging = match plan.compute_version {
        ComputeVersion::Sha256 => Staging::new(
            &storage,
            &plan.prefix,
            plan.cache_control.meta(ObjectKind::Chunk),
        ),
        _ => None,
    };
    let mut result = publish_with(storage, disk, plan, progress, staging.as_ref()).await;
    if let Some(staging) = &staging {
        // Whatever happened, the staged names go; published chunks are links of their own.
        if let (Err(warning), Ok(summary)) = (staging.remove().await, &mut result) {
            summary.warnings.push(warning);
        }
    }
    result
}

/// [`publish`], with data chunks staged while the version is computed when `staging`.
async fn publish_with(
    storage: Arc<Storage>,
    disk: Arc<dyn VirtualDisk>,
    plan: PublishPlan,
    progress: Arc<dyn Progress>,
    staging: Option<&Staging>,
) -> Result<PublishSummary> {
    let started = Instant::now();
    let total_size = disk.capacity();
    if total_size == 0 {
        invalid!("virtual disk size must be > 0");
    }
    if total_size % 512 != 0 {
        invalid!("virtual disk size {total_size} is not a multiple of 512 bytes");
    }
    let chunk_count = total_size.div_ceil(plan.chunk_size);
    if chunk_count > MAX_CHUNKS {
        invalid!(
            "the disk would have {chunk_count} chunks, more than {MAX_CHUNKS}: use a larger --chunk-size"
        );
    }

    let mut bytes_read = 0;
    let zero_digests = Arc::new(ZeroDigests::default());
    let mut early_base = None;
    let (computed_version, precomputed) = match plan.compute_version {
        ComputeVersion::None => (None, None),
        ComputeVersion::Sha256 => {
            // Chunks the base holds are not staged, so the base is needed before the version
            // is known: found through the image, which any version names.
            if let (Some(_), Some(image)) = (staging, provisional_destination(&plan)) {
                early_base = Some(load_base(&storage, &image, &plan).await);
            }
            let hashed = disk_digest::hash_disk(
                Arc::clone(&disk),
                plan.chunk_size,
                plan.concurrency,
                Arc::clone(&zero_digests),
                staging,
                early_base.as_ref().and_then(|(base, _)| base.as_ref()),
                Arc::clone(&progress),
            )
            .await?;
            bytes_read += hashed.read;
            (Some(hashed.version), Some(hashed.chunks))
        }
        ComputeVersion::ManifestSha256 => {
            let (digests, read) = hash_chunks(
                Arc::clone(&disk),
                total_size,
                plan.chunk_size,
                plan.concurrency,
                Arc::clone(&zero_digests),
                progress.as_ref(),
            )
            .await?;
            bytes_read += read;
            let version = manifest_version(
                total_size,
                plan.chunk_size,
                digests.iter().enumerate().map(|(i, d)| {
                    let offset = i as u64 * plan.chunk_size;
                    (plan.chunk_size.min(total_size - offset), d.sha256.as_str())
                }),
            );
            (Some(version), Some(digests))
        }
    };
    let destination = resolve_destination(&DestinationRequest {
        prefix: &plan.prefix,
        image_id: plan.image_id.as_deref(),
        image_version: plan.image_version.as_deref(),
        computed_version: computed_version.as_deref(),
    })?;
    if destination.version.starts_with(MANIFEST_VERSION_PREFIX)
        && plan.compute_version != ComputeVersion::ManifestSha256
    {
        invalid!(
            "version '{}': versions starting with {MANIFEST_VERSION_PREFIX} are computed by --compute-version manifest-sha256",
            destination.version
        );
    }
    let published = published_manifest(&storage, &destination, total_size, plan.chunk_size).await?;
    let fresh = published.is_none() && !has_chunks(&storage, &destination).await?;
    let (base, base_warning) = match early_base {
        // A re-run of the base version finds its chunks stored already.
        Some((base, warning)) => (base.filter(|b| b.version != destination.version), warning),
        None => load_base(&storage, &destination, &plan).await,
    };
    progress.start_upload(
        total_size,
        chunk_count,
        &destination.version_prefix,
        &storage.description,
    );

    let concurrency = plan.concurrency;
    let chunk_size = plan.chunk_size;
    let job = Arc::new(Job {
        storage: Arc::clone(&storage),
        disk,
        plan,
        destination: destination.clone(),
        total_size,
        precomputed,
        zero_digests,
        published,
        fresh,
        base,
        staging: staging.cloned(),
        buffers: BufferPool::new(chunk_size as usize),
        progress: Arc::clone(&progress),
    });
    // Each chunk is its own task, so reads, hashes and writes run on every core.
    let outcomes: Vec<ChunkOutcome> = stream::iter(0..chunk_count)
        .map(|index| {
            let task = tokio::spawn(Arc::clone(&job).publish_chunk(index));
            let guard = AbortOnDrop(task.abort_handle());
            async move {
                let _guard = guard;
                task.await
                    .map_err(|e| Error::invalid(format!("a chunk task stopped: {e}")))?
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let plan = &job.plan;

    let mut summary = PublishSummary {
        image_id: destination.image_id.clone(),
        version: destination.version.clone(),
        storage: storage.description.clone(),
        manifest_key: destination.manifest_key(),
        meta_key: (!plan.no_meta).then(|| destination.meta_key()),
        latest_key: plan.publish_latest.then(|| destination.latest_key()),
        total_size,
        chunk_size: plan.chunk_size,
        chunk_count,
        bytes_read,
        bytes_uploaded: 0,
        uploaded_chunks: 0,
        copied_chunks: 0,
        bytes_copied: 0,
        zero_chunks: 0,
        zero_bytes: 0,
        skipped_chunks: 0,
        base_version: job.base.as_ref().map(|b| b.version.clone()),
        warnings: base_warning.into_iter().collect(),
        seconds: 0.0,
    };
    let mut entries = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let len = outcome.entry.size.unwrap_or(0);
        summary.bytes_read += outcome.read;
        if outcome.entry.zero {
            summary.zero_chunks += 1;
            summary.zero_bytes += len;
        }
        match outcome.stored {
            Stored::Skipped => summary.skipped_chunks += 1,
            Stored::Uploaded => {
                summary.uploaded_chunks += 1;
                summary.bytes_uploaded += len;
            }
            Stored::Copied => {
                summary.copied_chunks += 1;
                summary.bytes_copied += len;
            }
            Stored::ZeroObject => {}
        }
        entries.push(outcome.entry);
    }
    progress.finish_upload();

    // The barrier: every chunk the manifest names is durable before the manifest is written,
    // including chunks an interrupted earlier run left behind without a sync.
    let chunk_keys: Vec<String> = (0..chunk_count)
        .map(|index| chunk_key(&destination.version_prefix, index))
        .collect();
    sync(&storage, &chunk_keys).await?;

    let manifest = Manifest::new(
        &destination.image_id,
        &destination.version,
        total_size,
        plan.chunk_size,
        entries,
    );
    let cc = &plan.cache_control;
    put_durable(
        &storage,
        &destination.manifest_key(),
        manifest.to_json(),
        &cc.meta(ObjectKind::Manifest),
    )
    .await?;
    if !plan.no_meta {
        let meta = Meta {
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            original_filename: plan.original_filename.clone(),
            total_size,
            chunk_size: plan.chunk_size,
            chunk_count,
            checksum_algorithm: plan.checksum.name().to_string(),
        };
        put_durable(
            &storage,
            &destination.meta_key(),
            meta.to_json(),
            &cc.meta(ObjectKind::Meta),
        )
        .await?;
    }
    if plan.publish_latest {
        let latest = Latest::new(
            &destination.image_id,
            &destination.version,
            &destination.manifest_key(),
        );
        put_durable(
            &storage,
            &destination.latest_key(),
            latest.to_json(),
            &cc.meta(ObjectKind::Latest),
        )
        .await?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The manifest already published at `destination`, when there is one: a re-run may complete
/// or repair that version but never change its bytes (versions are immutable).
async fn published_manifest(
    storage: &Storage,
    destination: &Destination,
    total_size: u64,
    chunk_size: u64,
) -> Result<Option<Manifest>> {
    let key = destination.manifest_key();
    let Some(bytes) = read_limited(storage, &key, MAX_MANIFEST_BYTES).await? else {
        return Ok(None);
    };
    let immutable = || {
        format!(
            "version '{}' of image '{}' is already published ({key}) with other content; \
             versions are immutable: publish under a new --image-version, or use --compute-version sha256",
            destination.version, destination.image_id
        )
    };
    let manifest = Manifest::parse(
        &bytes,
        ManifestLimits {
            max_chunks: MAX_CHUNKS,
        },
    )
    .with_context(|| format!("checking the already published {key}"))?;
    if manifest.total_size != total_size || manifest.chunk_size != chunk_size {
        return Err(Error::invalid(immutable()));
    }
    Ok(Some(manifest))
}

/// Whether any object is stored under the version's `chunks/` (an earlier, interrupted run).
async fn has_chunks(storage: &Storage, destination: &Destination) -> Result<bool> {
    let dir = crate::layout::chunk_file_key(&destination.version_prefix, "");
    let listed = storage.operator.list_with(&dir).limit(2).await;
    match listed {
        Ok(entries) => Ok(entries.iter().any(|e| e.path() != dir)),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::storage(
            format!("listing {dir} in {}", storage.description),
            e,
        )),
    }
}

/// The destination of a publish whose version is not known yet: its image (id and root) only,
/// or `None` when the prefix alone does not say where the image is.
fn provisional_destination(plan: &PublishPlan) -> Option<Destination> {
    let placeholder = format!("sha256-{}", "0".repeat(64));
    resolve_destination(&DestinationRequest {
        prefix: &plan.prefix,
        image_id: plan.image_id.as_deref(),
        image_version: None,
        computed_version: Some(&placeholder),
    })
    .ok()
}

/// The base chunks of a publish to `destination` (see [`base::base_chunks`]).
async fn load_base(
    storage: &Storage,
    destination: &Destination,
    plan: &PublishPlan,
) -> (Option<base::BaseChunks>, Option<String>) {
    match (&storage.copies, plan.checksum) {
        (Some(_), Checksum::Sha256) => base::base_chunks(storage, destination, &plan.base).await,
        // Without digests (or without copies) nothing can be matched or copied.
        _ => (None, None),
    }
}

/// Every chunk's digest, `concurrency` chunks at a time on blocking threads; zero chunks are
/// never read. Returns the digests and the bytes read.
async fn hash_chunks(
    disk: Arc<dyn VirtualDisk>,
    total: u64,
    chunk_size: u64,
    concurrency: usize,
    zero_digests: Arc<ZeroDigests>,
    progress: &dyn Progress,
) -> Result<(Vec<ChunkDigest>, u64)> {
    progress.start_hashing(total);
    let buffers = BufferPool::new(chunk_size as usize);
    let hashed: Vec<(ChunkDigest, u64)> = stream::iter(0..total.div_ceil(chunk_size))
        .map(|index| {
            let (disk, buffers, zero_digests) = (
                Arc::clone(&disk),
                Arc::clone(&buffers),
                Arc::clone(&zero_digests),
            );
            let offset = index * chunk_size;
            let len = chunk_size.min(total - offset);
            let task = tokio::task::spawn_blocking(move || -> Result<(ChunkDigest, u64)> {
                if is_zero_range(disk.as_ref(), offset, len)? {
                    let sha256 = zero_digests.get(len);
                    let zero = ChunkDigest {
                        sha256,
                        zero: true,
                        staged: false,
                    };
                    return Ok((zero, 0));
                }
                let mut buf = buffers.take(len as usize);
                disk.read_at(offset, buf.as_mut_slice()).map_err(|e| {
                    Error::invalid(format!("reading chunk {index} at offset {offset}: {e}"))
                })?;
                let sha256 = hex::encode(Sha256::digest(buf.as_ref()));
                Ok((
                    ChunkDigest {
                        sha256,
                        zero: false,
                        staged: false,
                    },
                    len,
                ))
            });
            async move {
                let hashed = task
                    .await
                    .map_err(|e| Error::invalid(format!("chunk hasher stopped: {e}")))??;
                progress.hashed(len);
                Ok::<_, Error>(hashed)
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let read = hashed.iter().map(|(_, read)| read).sum();
    Ok((hashed.into_iter().map(|(d, _)| d).collect(), read))
}

/// Whether the format reports `[offset, offset+len)` as entirely zero.
fn is_zero_range(disk: &dyn VirtualDisk, offset: u64, len: u64) -> Result<bool> {
    Ok(disk
        .block_status(offset, len)?
        .iter()
        .all(|e| e.kind == ExtentKind::Zero))
}

impl Job {
    async fn publish_chunk(self: Arc<Self>, index: u64) -> Result<ChunkOutcome> {
        let offset = index * self.plan.chunk_size;
        let len = self.plan.chunk_size.min(self.total_size - offset);
        let key = chunk_key(&self.destination.version_prefix, index);
        let want_digest = self.plan.checksum == Checksum::Sha256;
        let existing = match self.fresh {
            true => None,
            false => stat(&self.storage, &key).await?,
        };
        let known = self.precomputed.as_ref().map(|d| &d[index as usize]);

        // A re-run with digests known up front skips stored chunks without reading them.
        if let (Some(meta), Some(known)) = (&existing, known) {
            let expected = ExpectedChunk {
                len,
                sha256: Some(&known.sha256),
            };
            if expected.held_by(&self.storage, &key, meta, false).await? {
                return Ok(self.stored(len, known.sha256.clone(), known.zero, 0));
            }
        }

        // Block status is metadata only; zero chunks never leave this task.
        let zero = match known {
            Some(k) => k.zero,
            None => is_zero_range(self.disk.as_ref(), offset, len)?,
        };
        // The digest, reading the chunk now only when it must be hashed.
        let need_digest =
            want_digest || existing.is_some() || self.published.is_some() || self.base.is_some();
        let mut bytes = None;
        let digest = match known {
            Some(k) => Some(k.sha256.clone()),
            None if zero => need_digest.then(|| self.zero_digests.get(len)),
            None => {
                let (read, digest) = self.read_chunk(index, offset, len, need_digest).await?;
                bytes = Some(read);
                digest
            }
        };
        let mut read = if bytes.is_some() { len } else { 0 };

        if let (Some(meta), Some(digest)) = (&existing, &digest) {
            let expected = ExpectedChunk {
                len,
                sha256: Some(digest),
            };
            if expected.held_by(&self.storage, &key, meta, true).await? {
                return Ok(self.stored(len, digest.clone(), zero, read));
            }
        }

        if let Some(published) = &self.published {
            // Writing may only restore what the published manifest names.
            if published.chunk_sha256(index).is_none() || published.chunk_sha256(index) != digest {
                invalid!(
                    "chunk {index} differs from the already published {}; versions are immutable: \
                     publish under a new --image-version, or use --compute-version sha256",
                    self.destination.manifest_key()
                );
            }
        }
        let meta = ObjectMeta {
            sha256: digest.clone(),
            ..self.plan.cache_control.meta(ObjectKind::Chunk)
        };
        let stored = match (zero, &self.storage.zero_objects) {
            (true, Some(zero_objects)) => {
                zero_objects
                    .write_zero(&self.storage.operator, &key, len, &meta)
                    .await?;
                Stored::ZeroObject
            }
            (true, None) => {
                put_deferred(&self.storage, &key, vec![0u8; len as usize], &meta).await?;
                Stored::Uploaded
            }
            (false, _) if self.copy_from_base(&key, len, digest.as_deref()).await? => {
                Stored::Copied
            }
            (false, _) if self.link_staged(index, &key, len, known).await? => Stored::Uploaded,
            (false, _) => {
                let bytes = match bytes {
                    Some(bytes) => bytes,
                    None => {
                        read += len;
                        self.read_chunk(index, offset, len, false).await?.0
                    }
                };
                put_deferred(&self.storage, &key, bytes, &meta).await?;
                Stored::Uploaded
            }
        };
        self.progress.chunk_done(len);
        Ok(self.outcome(len, digest, zero, read, stored))
    }

    /// Reads chunk `index` on a blocking thread, with its digest when `hash`.
    async fn read_chunk(
        self: &Arc<Self>,
        index: u64,
        offset: u64,
        len: u64,
        hash: bool,
    ) -> Result<(bytes::Bytes, Option<String>)> {
        let job = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut buf = job.buffers.take(len as usize);
            job.disk.read_at(offset, buf.as_mut_slice()).map_err(|e| {
                Error::invalid(format!("reading chunk {index} at offset {offset}: {e}"))
            })?;
            let digest = hash.then(|| hex::encode(Sha256::digest(buf.as_ref())));
            Ok((buf.into_bytes(), digest))
        })
        .await
        .map_err(|e| Error::invalid(format!("chunk reader stopped: {e}")))?
    }

    /// Links the chunk staged while the version was computed to `key`; `false` when it was
    /// not staged.
    async fn link_staged(
        &self,
        index: u64,
        key: &str,
        len: u64,
        known: Option<&ChunkDigest>,
    ) -> Result<bool> {
        let (Some(staging), Some(copies), Some(ChunkDigest { staged: true, .. })) =
            (&self.staging, &self.storage.copies, known)
        else {
            return Ok(false);
        };
        let staged = staging.key(index);
        copies
            .copy(&self.storage.operator, &staged, key, len)
            .await
            .map_err(|e| Error::Context {
                context: format!("linking the staged chunk {staged} to {key}"),
                source: Box::new(e.into()),
            })
    }

    /// Copies the base version's chunk holding the bytes with sha256 `digest` to `key`, when
    /// there is one and its object still holds them; `false` when the chunk must be uploaded.
    async fn copy_from_base(&self, key: &str, len: u64, digest: Option<&str>) -> Result<bool> {
        let (Some(base), Some(copies), Some(digest)) = (&self.base, &self.storage.copies, digest)
        else {
            return Ok(false);
        };
        let Some((source, source_len)) = base.find(digest) else {
            return Ok(false);
        };
        if *source_len != len {
            return Ok(false);
        }
        // The base object must hold the bytes its manifest names: a damaged base is never
        // copied into a new version.
        let Some(meta) = stat(&self.storage, source).await? else {
            return Ok(false);
        };
        let expected = ExpectedChunk {
            len,
            sha256: Some(digest),
        };
        if !expected.held_by(&self.storage, source, &meta, true).await? {
            return Ok(false);
        }
        copies
            .copy(&self.storage.operator, source, key, len)
            .await
            .map_err(|e| Error::Context {
                context: format!("copying chunk {source} of the base version to {key}"),
                source: Box::new(e.into()),
            })
    }

    fn outcome(
        &self,
        len: u64,
        digest: Option<String>,
        zero: bool,
        read: u64,
        stored: Stored,
    ) -> ChunkOutcome {
        ChunkOutcome {
            entry: ChunkEntry {
                size: Some(len),
                sha256: if self.plan.checksum == Checksum::Sha256 {
                    digest
                } else {
                    None
                },
                zero,
            },
            read,
            stored,
        }
    }

    /// The outcome of a chunk found already stored.
    fn stored(&self, len: u64, digest: String, zero: bool, read: u64) -> ChunkOutcome {
        self.progress.chunk_done(len);
        self.outcome(len, Some(digest), zero, read, Stored::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use aero_plugin_api::backend::{build_storage, Settings};
    use aero_plugin_api::{DiskInfo, Extent};

    const CHUNK: u64 = 4096;

    /// A disk in memory whose all-zero chunks are reported as zero extents.
    struct MemDisk(Vec<u8>);

    impl VirtualDisk for MemDisk {
        fn capacity(&self) -> u64 {
            self.0.len() as u64
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> aero_plugin_api::Result<()> {
            buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }

        fn block_status(&self, offset: u64, length: u64) -> aero_plugin_api::Result<Vec<Extent>> {
            let bytes = &self.0[offset as usize..(offset + length) as usize];
            let kind = if bytes.iter().all(|&b| b == 0) {
                ExtentKind::Zero
            } else {
                ExtentKind::Data
            };
            Ok(vec![Extent::new(offset, length, kind)])
        }

        fn info(&self) -> DiskInfo {
            DiskInfo::default()
        }
    }

    /// Four chunks: data, zero, data, data (the last one short).
    fn disk(seed: u8) -> Arc<dyn VirtualDisk> {
        let mut bytes = vec![seed; (3 * CHUNK + 512) as usize];
        bytes[CHUNK as usize..2 * CHUNK as usize].fill(0);
        Arc::new(MemDisk(bytes))
    }

    fn plan(version: &str, compute: ComputeVersion) -> PublishPlan {
        PublishPlan {
            prefix: "images/disk/".into(),
            image_id: None,
            image_version: (compute == ComputeVersion::None).then(|| version.to_string()),
            compute_version: compute,
            publish_latest: true,
            cache_control: CacheControls {
                chunks: "no-transform".into(),
                manifest: "no-transform".into(),
                latest: "no-transform".into(),
            },
            chunk_size: CHUNK,
            checksum: Checksum::Sha256,
            concurrency: 2,
            no_meta: false,
            original_filename: "disk.raw".into(),
            base: Base::Auto,
        }
    }

    fn memory() -> Arc<Storage> {
        Arc::new(build_storage(&backend_memory::MemoryBackend, &Settings::new()).unwrap())
    }

    async fn run(
        storage: &Arc<Storage>,
        disk: Arc<dyn VirtualDisk>,
        plan: PublishPlan,
    ) -> Result<PublishSummary> {
        publish(Arc::clone(storage), disk, plan, Arc::new(NoProgress)).await
    }

    #[tokio::test]
    async fn uploads_data_marks_zeros_and_skips_what_is_stored() {
        let s = memory();
        for compute in [ComputeVersion::None, ComputeVersion::Sha256] {
            // Without a base: the second version uploads its chunks too.
            let plan = |v, c| PublishPlan {
                base: Base::None,
                ..plan(v, c)
            };
            let first = run(&s, disk(7), plan("v1", compute)).await.unwrap();
            assert_eq!(first.chunk_count, 4);
            assert_eq!(first.zero_chunks, 1);
            assert_eq!(first.skipped_chunks, 0);
            // Zero chunks are never read from the disk.
            let data = 2 * CHUNK + 512;
            let hashing_pass = if compute == ComputeVersion::Sha256 {
                data
            } else {
                0
            };
            assert_eq!(first.bytes_read, data + hashing_pass);
            // Memory has no cheap zero objects: the zero chunk is written as bytes.
            assert_eq!(first.bytes_uploaded, 3 * CHUNK + 512);
            let key = &first.manifest_key;
            let stored = read_limited(&s, key, MAX_MANIFEST_BYTES)
                .await
                .unwrap()
                .unwrap();
            let manifest = Manifest::parse(&stored, ManifestLimits::default()).unwrap();
            let entries = manifest.chunks.unwrap();
            assert!(entries[1].zero && !entries[0].zero);
            assert_eq!(entries[3].size, Some(512));

            // A re-run stores nothing new.
            let again = run(&s, disk(7), plan("v1", compute)).await.unwrap();
            assert_eq!(again.skipped_chunks, 4);
            assert_eq!(again.bytes_uploaded, 0);
            assert_eq!(again.version, first.version);
        }
    }

    /// [`disk`] with chunk 2 changed.
    fn changed_disk(seed: u8) -> Arc<dyn VirtualDisk> {
        let mut bytes = vec![seed; (3 * CHUNK + 512) as usize];
        bytes[CHUNK as usize..2 * CHUNK as usize].fill(0);
        bytes[2 * CHUNK as usize] = seed.wrapping_add(1);
        Arc::new(MemDisk(bytes))
    }

    async fn read_chunk(s: &Storage, summary: &PublishSummary, index: u64) -> Vec<u8> {
        let key = summary.manifest_key.replace(
            "manifest.json",
            &format!("chunks/{}", crate::layout::chunk_file_name(index, 8)),
        );
        s.operator.read(&key).await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn copies_unchanged_chunks_from_the_latest_version() {
        for compute in [
            ComputeVersion::None,
            ComputeVersion::Sha256,
            ComputeVersion::ManifestSha256,
        ] {
            let s = memory();
            let first = run(&s, disk(7), plan("v1", compute)).await.unwrap();
            assert_eq!(
                (first.copied_chunks, first.base_version.as_deref()),
                (0, None)
            );
            let second = run(&s, changed_disk(7), plan("v2", compute)).await.unwrap();
            assert_eq!(second.base_version.as_deref(), Some(first.version.as_str()));
            // Chunks 0 and 3 are the same as in v1, 1 is zero, 2 changed.
            assert_eq!(
                (second.copied_chunks, second.bytes_copied),
                (2, CHUNK + 512)
            );
            // Memory has no zero objects: the zero chunk is uploaded with the changed one.
            assert_eq!(
                (second.uploaded_chunks, second.bytes_uploaded),
                (2, 2 * CHUNK)
            );
            assert_eq!((second.zero_chunks, second.zero_bytes), (1, CHUNK));
            assert!(second.warnings.is_empty(), "{:?}", second.warnings);
            // The copies hold the new version's bytes, with the chunk's HTTP metadata.
            let mut expected = vec![7u8; (3 * CHUNK + 512) as usize];
            expected[CHUNK as usize..2 * CHUNK as usize].fill(0);
            expected[2 * CHUNK as usize] = 8;
            for index in 0..4 {
                let start = (index * CHUNK) as usize;
                let end = (start + CHUNK as usize).min(expected.len());
                assert_eq!(read_chunk(&s, &second, index).await, &expected[start..end]);
            }
            let key = second
                .manifest_key
                .replace("manifest.json", "chunks/00000000.bin");
            let meta = s.operator.stat(&key).await.unwrap();
            assert_eq!(meta.cache_control(), Some("no-transform"));
            assert_eq!(meta.content_type(), Some(crate::format::CHUNK_MIME));
        }
    }

    #[tokio::test]
    async fn a_base_is_chosen_or_refused_with_a_warning() {
        let s = memory();
        run(&s, disk(7), plan("v1", ComputeVersion::None))
            .await
            .unwrap();
        let mut other = plan("v2", ComputeVersion::None);
        other.publish_latest = false;
        run(&s, disk(9), other).await.unwrap();

        // --base none: everything is uploaded, silently.
        let none = PublishPlan {
            base: Base::None,
            ..plan("v3", ComputeVersion::None)
        };
        let summary = run(&s, changed_disk(7), none).await.unwrap();
        assert_eq!((summary.copied_chunks, summary.uploaded_chunks), (0, 4));
        assert!(summary.base_version.is_none() && summary.warnings.is_empty());

        // An explicit version, not the one latest.json names.
        let explicit = PublishPlan {
            base: Base::Version("v2".into()),
            ..plan("v4", ComputeVersion::None)
        };
        let summary = run(&s, disk(9), explicit).await.unwrap();
        assert_eq!(summary.base_version.as_deref(), Some("v2"));
        assert_eq!(summary.copied_chunks, 3);

        // A missing base version: a warning, every chunk uploaded.
        let missing = PublishPlan {
            base: Base::Version("v9".into()),
            ..plan("v5", ComputeVersion::None)
        };
        let summary = run(&s, disk(7), missing).await.unwrap();
        assert_eq!((summary.copied_chunks, summary.uploaded_chunks), (0, 4));
        assert!(
            summary.warnings[0].contains("images/disk/v9/manifest.json does not exist"),
            "{:?}",
            summary.warnings
        );

        // A damaged base manifest: the same.
        s.operator
            .write("images/disk/v2/manifest.json", "{not json")
            .await
            .unwrap();
        let damaged = PublishPlan {
            base: Base::Version("v2".into()),
            ..plan("v6", ComputeVersion::None)
        };
        let summary = run(&s, disk(9), damaged).await.unwrap();
        assert_eq!(summary.copied_chunks, 0);
        assert!(
            summary.warnings[0].contains("images/disk/v2/manifest.json"),
            "{:?}",
            summary.warnings
        );

        // A base chunk whose bytes no longer match its manifest is not copied: uploaded.
        s.operator
            .write(
                "images/disk/v5/chunks/00000000.bin",
                vec![1u8; CHUNK as usize],
            )
            .await
            .unwrap();
        let from_v5 = PublishPlan {
            base: Base::Version("v5".into()),
            ..plan("v7", ComputeVersion::None)
        };
        let summary = run(&s, disk(7), from_v5).await.unwrap();
        assert_eq!(summary.base_version.as_deref(), Some("v5"));
        // Chunks 0 and 2 share a digest and so the same (damaged) base chunk.
        assert_eq!((summary.copied_chunks, summary.uploaded_chunks), (1, 3));
        assert_eq!(read_chunk(&s, &summary, 0).await, vec![7u8; CHUNK as usize]);
    }

    #[tokio::test]
    async fn repairs_a_missing_chunk_but_never_changes_a_published_version() {
        let s = memory();
        let first = run(&s, disk(7), plan("v1", ComputeVersion::None))
            .await
            .unwrap();
        s.operator
            .delete("images/disk/v1/chunks/00000002.bin")
            .await
            .unwrap();
        let repaired = run(&s, disk(7), plan("v1", ComputeVersion::None))
            .await
            .unwrap();
        assert_eq!(repaired.skipped_chunks, 3);
        assert_eq!(repaired.bytes_uploaded, CHUNK);
        assert_eq!(repaired.manifest_key, first.manifest_key);

        // Other bytes under the same version: refused, naming the chunk.
        let err = run(&s, disk(9), plan("v1", ComputeVersion::None))
            .await
            .unwrap_err()
            .chain();
        assert!(
            err.contains("chunk 0 differs") && err.contains("immutable"),
            "{err}"
        );
        // Another geometry under the same version: refused before any chunk.
        let mut other = plan("v1", ComputeVersion::None);
        other.chunk_size = 2 * CHUNK;
        let err = run(&s, disk(7), other).await.unwrap_err().chain();
        assert!(
            err.contains("already published") && err.contains("immutable"),
            "{err}"
        );
        // A new version is fine.
        let v2 = run(&s, disk(9), plan("v2", ComputeVersion::None))
            .await
            .unwrap();
        assert_eq!(v2.skipped_chunks, 0);
    }

    /// An 8 GiB disk holding data only in `data` chunks of 4 MiB, whose reads of anything
    /// else fail: zero chunks must never be read.
    struct SparseDisk {
        data: Vec<u64>,
    }

    const BIG_CHUNK: u64 = 4 * 1024 * 1024;

    impl VirtualDisk for SparseDisk {
        fn capacity(&self) -> u64 {
            8 << 30
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> aero_plugin_api::Result<()> {
            let index = offset / BIG_CHUNK;
            if !self.data.contains(&index) || buf.len() as u64 > BIG_CHUNK - offset % BIG_CHUNK {
                return Err(aero_plugin_api::Error::io(format!(
                    "read of {} bytes at {offset} outside the data",
                    buf.len()
                )));
            }
            buf.fill((index % 251) as u8 + 1);
            Ok(())
        }

        fn block_status(&self, offset: u64, length: u64) -> aero_plugin_api::Result<Vec<Extent>> {
            let kind = if self.data.contains(&(offset / BIG_CHUNK)) {
                ExtentKind::Data
            } else {
                ExtentKind::Zero
            };
            Ok(vec![Extent::new(offset, length, kind)])
        }

        fn info(&self) -> DiskInfo {
            DiskInfo::default()
        }
    }

    #[tokio::test]
    async fn the_manifest_version_mode_never_reads_zero_chunks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new();
        settings.insert("root".into(), dir.path().to_string_lossy().into_owned());
        let s = Arc::new(build_storage(&backend_fs::FsBackend, &settings).unwrap());
        let disk: Arc<dyn VirtualDisk> = Arc::new(SparseDisk {
            data: vec![0, 7, 2047],
        });
        let mut p = plan("", ComputeVersion::ManifestSha256);
        p.chunk_size = BIG_CHUNK;
        p.concurrency = 4;
        let first = run(&s, Arc::clone(&disk), p.clone()).await.unwrap();
        assert!(
            first.version.starts_with(MANIFEST_VERSION_PREFIX),
            "{first:?}"
        );
        assert_eq!(first.chunk_count, 2048);
        assert_eq!(first.zero_chunks, 2045);
        // Data chunks are read twice (hashed, then uploaded); zero chunks never.
        assert_eq!(first.bytes_read, 2 * 3 * BIG_CHUNK);
        assert_eq!(first.bytes_uploaded, 3 * BIG_CHUNK);
        let stored = read_limited(&s, &first.manifest_key, MAX_MANIFEST_BYTES)
            .await
            .unwrap()
            .unwrap();
        let manifest = Manifest::parse(&stored, ManifestLimits::default()).unwrap();
        assert_eq!(manifest.version, first.version);
        // Zero objects cost no data blocks and share one inode.
        let version_dir = dir
            .path()
            .join(first.manifest_key.trim_end_matches("manifest.json"));
        let zero = |i: u64| std::fs::metadata(version_dir.join(crate::layout::chunk_name(i, 8)));
        let (a, b) = (zero(1).unwrap(), zero(2046).unwrap());
        assert_eq!((a.len(), a.blocks()), (BIG_CHUNK, 0));
        assert_eq!(a.ino(), b.ino());
        // A re-run computes the same version and finds everything stored.
        let again = run(&s, disk, p).await.unwrap();
        assert_eq!(again.version, first.version);
        assert_eq!((again.skipped_chunks, again.bytes_uploaded), (2048, 0));
    }

    #[tokio::test]
    async fn the_sha256_version_on_local_files_reads_the_disk_once_and_stages_nothing_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new();
        settings.insert("root".into(), dir.path().to_string_lossy().into_owned());
        let s = Arc::new(build_storage(&backend_fs::FsBackend, &settings).unwrap());
        let first = run(&s, disk(7), plan("", ComputeVersion::Sha256))
            .await
            .unwrap();
        // One read of the data: the chunks were staged while the version was computed.
        let data = 2 * CHUNK + 512;
        assert_eq!(first.bytes_read, data);
        assert_eq!((first.uploaded_chunks, first.bytes_uploaded), (3, data));
        assert_eq!(first.zero_chunks, 1);
        assert!(first.warnings.is_empty(), "{:?}", first.warnings);
        let mut expected = vec![7u8; data as usize + CHUNK as usize];
        expected[CHUNK as usize..2 * CHUNK as usize].fill(0);
        assert_eq!(
            first.version,
            format!("sha256-{}", hex::encode(Sha256::digest(&expected)))
        );
        for index in 0..4 {
            let start = (index * CHUNK) as usize;
            let end = (start + CHUNK as usize).min(expected.len());
            assert_eq!(read_chunk(&s, &first, index).await, &expected[start..end]);
        }
        // Nothing staged is left beside the version and the pointer.
        let names = |path: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir.path().join(path))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names("images/disk"),
            ["latest.json", first.version.as_str()]
        );

        // A new version with one chunk changed: the unchanged ones are linked from the base,
        // only the changed one is staged and linked.
        let second = run(&s, changed_disk(7), plan("", ComputeVersion::Sha256))
            .await
            .unwrap();
        assert_eq!(second.base_version.as_deref(), Some(first.version.as_str()));
        assert_eq!((second.copied_chunks, second.uploaded_chunks), (2, 1));
        assert_eq!(second.bytes_read, data);
        expected[2 * CHUNK as usize] = 8;
        for index in 0..4 {
            let start = (index * CHUNK) as usize;
            let end = (start + CHUNK as usize).min(expected.len());
            assert_eq!(read_chunk(&s, &second, index).await, &expected[start..end]);
        }
        assert_eq!(names("images/disk").len(), 3);
        // A re-run finds every chunk stored.
        let again = run(&s, changed_disk(7), plan("", ComputeVersion::Sha256))
            .await
            .unwrap();
        assert_eq!((again.skipped_chunks, again.uploaded_chunks), (4, 0));
        assert_eq!(names("images/disk").len(), 3);
    }

    #[tokio::test]
    async fn the_manifest_version_needs_digests_and_is_never_given_by_hand() {
        let s = memory();
        let mut p = plan("", ComputeVersion::ManifestSha256);
        p.checksum = Checksum::None;
        let err = run(&s, disk(1), p).await.unwrap_err().chain();
        assert!(err.contains("--checksum sha256"), "{err}");
        let forged = format!("{MANIFEST_VERSION_PREFIX}{}", "0".repeat(64));
        let err = run(&s, disk(1), plan(&forged, ComputeVersion::None))
            .await
            .unwrap_err()
            .chain();
        assert!(err.contains("manifest-sha256"), "{err}");
    }

    #[tokio::test]
    async fn refuses_bad_options_and_sizes() {
        let s = memory();
        let mut bad = plan("v1", ComputeVersion::None);
        bad.chunk_size = 1000;
        assert!(run(&s, disk(1), bad)
            .await
            .unwrap_err()
            .chain()
            .contains("--chunk-size"));
        let odd: Arc<dyn VirtualDisk> = Arc::new(MemDisk(vec![1; 1000]));
        let err = run(&s, odd, plan("v1", ComputeVersion::None))
            .await
            .unwrap_err()
            .chain();
        assert!(err.contains("not a multiple of 512"), "{err}");
    }
}
