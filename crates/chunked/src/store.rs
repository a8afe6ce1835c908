//! Objects with their HTTP metadata in a [`Storage`]: writing, looking up, the one bounded
//! read, the one "not found?" and the one "does this object hold that chunk?".

use crate::error::invalid;
use crate::format::has_no_transform;
use crate::layout::ObjectKind;
use crate::{Error, Result};
use aero_plugin_api::backend::{opendal, ObjectMeta, Storage, DIGEST_METADATA_KEY};
use bytes::Bytes;

/// The Cache-Control values of the three kinds of published objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheControls {
    /// Chunks.
    pub chunks: String,
    /// `manifest.json` and `meta.json`.
    pub manifest: String,
    /// `latest.json`.
    pub latest: String,
}

impl CacheControls {
    /// Checks that each value carries `no-transform`.
    pub fn validate(&self) -> Result<()> {
        for (flag, value) in [
            ("cache-control-chunks", &self.chunks),
            ("cache-control-manifest", &self.manifest),
            ("cache-control-latest", &self.latest),
        ] {
            if !has_no_transform(value) {
                invalid!("--{flag} '{value}' must contain the no-transform directive");
            }
        }
        Ok(())
    }

    /// The metadata of an object of `kind`.
    pub fn meta(&self, kind: ObjectKind) -> ObjectMeta {
        let cache_control = match kind {
            ObjectKind::Chunk => &self.chunks,
            ObjectKind::Manifest | ObjectKind::Meta => &self.manifest,
            ObjectKind::Latest => &self.latest,
        };
        ObjectMeta {
            content_type: kind.content_type().to_string(),
            cache_control: cache_control.clone(),
            content_encoding: "identity".to_string(),
            sha256: None,
        }
    }
}

/// Whether an opendal error means "no such object".
pub fn is_not_found(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::NotFound
}

/// Writes `bytes` to `key` with `meta`, as far as the backend stores metadata (the sha256 as
/// user metadata [`DIGEST_METADATA_KEY`]).
pub async fn put(
    storage: &Storage,
    key: &str,
    bytes: impl Into<opendal::Buffer>,
    meta: &ObjectMeta,
) -> Result<()> {
    let capability = storage.operator.info().capability();
    let mut write = storage.operator.write_with(key, bytes);
    if capability.write_with_content_type {
        write = write.content_type(&meta.content_type);
    }
    if capability.write_with_cache_control {
        write = write.cache_control(&meta.cache_control);
    }
    if capability.write_with_content_encoding {
        write = write.content_encoding(&meta.content_encoding);
    }
    if let (Some(digest), true) = (&meta.sha256, capability.write_with_user_metadata) {
        write = write.user_metadata([(DIGEST_METADATA_KEY.to_string(), digest.to_string())]);
    }
    if let Err(e) = write.await {
        let hint = access_hint(&e);
        return Err(Error::storage(
            format!("writing {key} to {}{hint}", storage.description),
            e,
        ));
    }
    Ok(())
}

/// Writes like [`put`], but where the backend defers durability ([`Storage::durability`]),
/// without waiting for the object to be durable: a later [`sync`] naming `key` does that.
pub async fn put_deferred(
    storage: &Storage,
    key: &str,
    bytes: impl Into<opendal::Buffer>,
    meta: &ObjectMeta,
) -> Result<()> {
    match &storage.durability {
        Some(durability) => Ok(durability.write(key, bytes.into(), meta).await?),
        None => put(storage, key, bytes, meta).await,
    }
}

/// The durability barrier: when it returns, the objects at `keys` survive a crash (nothing
/// to wait for where every acknowledged write is durable).
pub async fn sync(storage: &Storage, keys: &[String]) -> Result<()> {
    match &storage.durability {
        Some(durability) => Ok(durability.sync(keys).await?),
        None => Ok(()),
    }
}

/// Writes `key` and makes it durable before returning.
pub async fn put_durable(
    storage: &Storage,
    key: &str,
    bytes: impl Into<opendal::Buffer>,
    meta: &ObjectMeta,
) -> Result<()> {
    put_deferred(storage, key, bytes, meta).await?;
    sync(storage, &[key.to_string()]).await
}

/// A hint for errors that mean the credentials were refused.
fn access_hint(e: &opendal::Error) -> &'static str {
    if e.kind() == opendal::ErrorKind::PermissionDenied {
        " (access denied: check the storage credentials and permissions)"
    } else {
        ""
    }
}

/// Metadata of `key`, or `None` when it does not exist.
pub async fn stat(storage: &Storage, key: &str) -> Result<Option<opendal::Metadata>> {
    match storage.operator.stat(key).await {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => {
            let hint = access_hint(&e);
            Err(Error::storage(
                format!("looking up {key} in {}{hint}", storage.description),
                e,
            ))
        }
    }
}

/// The bytes of `key`, or `None` when it does not exist; larger than `limit` is an error, found
/// before reading, so an oversized object never costs more than `limit` bytes of memory.
pub async fn read_limited(storage: &Storage, key: &str, limit: u64) -> Result<Option<Bytes>> {
    Ok(read_limited_with_meta(storage, key, limit)
        .await?
        .map(|(bytes, _)| bytes))
}

/// [`read_limited`], with the object's metadata.
pub async fn read_limited_with_meta(
    storage: &Storage,
    key: &str,
    limit: u64,
) -> Result<Option<(Bytes, opendal::Metadata)>> {
    let Some(meta) = stat(storage, key).await? else {
        return Ok(None);
    };
    if meta.is_dir() {
        return Ok(None);
    }
    if meta.content_length() > limit {
        invalid!(
            "{key} in {} is {} bytes, more than the {limit} bytes allowed",
            storage.description,
            meta.content_length()
        );
    }
    match storage.operator.read(key).await {
        Ok(buf) => Ok(Some((buf.to_bytes(), meta))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::storage(
            format!("reading {key} from {}", storage.description),
            e,
        )),
    }
}

/// The sha256 recorded in an object's user metadata.
pub fn recorded_digest(meta: &opendal::Metadata) -> Option<String> {
    meta.user_metadata()
        .and_then(|m| m.get(DIGEST_METADATA_KEY).map(|v| v.to_ascii_lowercase()))
}

/// What a chunk must be: its length and, when known, its lowercase hex sha256.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedChunk<'a> {
    /// Length in bytes.
    pub len: u64,
    /// Digest, when the manifest (or the publisher) knows it.
    pub sha256: Option<&'a str>,
}

impl ExpectedChunk<'_> {
    /// Checks `bytes` against the length and digest; the error says what differs.
    pub fn check(&self, bytes: &[u8]) -> Result<(), ChunkMismatch> {
        if bytes.len() as u64 != self.len {
            return Err(ChunkMismatch::Size {
                got: bytes.len() as u64,
                expected: self.len,
            });
        }
        if let Some(want) = self.sha256 {
            let got = crate::format::sha256_hex(bytes);
            if got != want {
                return Err(ChunkMismatch::Digest {
                    got,
                    expected: want.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether the object at `key` (described by `meta`) holds this chunk: the right size and
    /// the expected digest, as recorded in its metadata or, with `read_back` when none is
    /// recorded, found by reading the object back. Without an expected digest, no object
    /// holds it.
    pub async fn held_by(
        &self,
        storage: &Storage,
        key: &str,
        meta: &opendal::Metadata,
        read_back: bool,
    ) -> Result<bool> {
        let Some(want) = self.sha256 else {
            return Ok(false);
        };
        if meta.content_length() != self.len {
            return Ok(false);
        }
        match recorded_digest(meta) {
            Some(recorded) => Ok(recorded == want),
            None if read_back => match read_limited(storage, key, self.len).await {
                Ok(Some(bytes)) => Ok(self.check(&bytes).is_ok()),
                Ok(None) => Ok(false),
                Err(e) => Err(Error::Context {
                    context: format!("reading back {key}"),
                    source: Box::new(e),
                }),
            },
            None => Ok(false),
        }
    }
}

/// How a chunk's bytes differ from what the manifest says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkMismatch {
    /// The wrong length.
    #[error("size is {got} bytes, expected {expected}")]
    Size {
        /// Bytes found.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The wrong digest.
    #[error("sha256 is {got}, expected {expected}")]
    Digest {
        /// Digest found.
        got: String,
        /// Digest expected.
        expected: String,
    },
}
