//! Writing and reading published objects with their HTTP metadata.

use crate::chunked::{has_no_transform, ObjectKind};
use crate::storage::is_not_found;
use aero_plugin_api::backend::{opendal, ObjectMeta, Storage, DIGEST_METADATA_KEY};
use anyhow::{bail, Context, Result};

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
                bail!("--{flag} '{value}' must contain the no-transform directive");
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
        return Err(e).with_context(|| format!("writing {key} to {}{hint}", storage.description));
    }
    Ok(())
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
            Err(e).with_context(|| format!("looking up {key} in {}{hint}", storage.description))
        }
    }
}

/// The bytes of `key`, or `None` when it does not exist; larger than `limit` is an error.
pub async fn read_limited(storage: &Storage, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let Some(meta) = stat(storage, key).await? else {
        return Ok(None);
    };
    if meta.content_length() > limit {
        bail!(
            "{key} in {} is {} bytes, more than the {limit} bytes allowed",
            storage.description,
            meta.content_length()
        );
    }
    match storage.operator.read(key).await {
        Ok(buf) => Ok(Some(buf.to_vec())),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {key} from {}", storage.description)),
    }
}

/// The sha256 recorded in an object's user metadata.
pub fn recorded_digest(meta: &opendal::Metadata) -> Option<String> {
    meta.user_metadata()
        .and_then(|m| m.get(DIGEST_METADATA_KEY).map(|v| v.to_ascii_lowercase()))
}
