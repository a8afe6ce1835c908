//! The base of an incremental publish: an earlier version of the same image whose chunks are
//! copied inside the storage instead of uploaded, wherever a new chunk has the same sha256.

use crate::format::ManifestLimits;
use crate::layout::Destination;
use crate::resolve::{read_pointer, LoadedManifest};
use crate::Result;
use aero_plugin_api::backend::Storage;
use std::collections::HashMap;

/// Which earlier version a publish copies unchanged chunks from (`--base`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Base {
    /// The version `latest.json` names, when the image has one (the default).
    #[default]
    Auto,
    /// The version `latest.json` names; a warning when there is none.
    Latest,
    /// This version of the same image.
    Version(String),
    /// No base: every chunk is uploaded.
    None,
}

impl Base {
    /// Parses `auto`, `latest`, `none` or a version.
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "auto" => Base::Auto,
            "latest" => Base::Latest,
            "none" => Base::None,
            version => Base::Version(version.to_string()),
        }
    }
}

/// The data chunks of the base version, by sha256.
#[derive(Debug)]
pub(super) struct BaseChunks {
    /// The base's version.
    pub version: String,
    /// sha256 → (key, size) of a data chunk of the base holding those bytes.
    by_digest: HashMap<String, (String, u64)>,
}

impl BaseChunks {
    /// A base chunk holding the bytes whose sha256 is `sha256`, as (key, size).
    pub fn find(&self, sha256: &str) -> Option<&(String, u64)> {
        self.by_digest.get(sha256)
    }
}

/// The base chunks `base` names for a publish to `destination`, or why there are none: a base
/// that cannot be used (no pointer, a missing or damaged manifest, no chunk digests) gives a
/// warning, and the publish uploads every chunk.
pub(super) async fn base_chunks(
    storage: &Storage,
    destination: &Destination,
    base: &Base,
) -> (Option<BaseChunks>, Option<String>) {
    match load(storage, destination, base).await {
        Ok(Some(chunks)) if chunks.by_digest.is_empty() => (
            None,
            Some(format!(
                "base version {} lists no chunk digests: uploading every chunk",
                chunks.version
            )),
        ),
        Ok(chunks) => (chunks, None),
        Err(e) => (
            None,
            Some(format!(
                "not using a base ({}): uploading every chunk",
                e.chain()
            )),
        ),
    }
}

async fn load(
    storage: &Storage,
    destination: &Destination,
    base: &Base,
) -> Result<Option<BaseChunks>> {
    let root = &destination.image_root;
    let version = match base {
        Base::None => return Ok(None),
        Base::Version(version) => version.clone(),
        Base::Auto | Base::Latest => {
            match read_pointer(storage, root, Some(&destination.image_id)).await? {
                Some(latest) => latest.version,
                None if *base == Base::Auto => return Ok(None),
                None => crate::error::invalid!(
                    "--base latest: {} does not exist",
                    destination.latest_key()
                ),
            }
        }
    };
    // Publishing the base version again (a re-run) finds its chunks stored already.
    if version == destination.version {
        return Ok(None);
    }
    let limits = ManifestLimits {
        max_chunks: super::MAX_CHUNKS,
    };
    let Some(loaded) =
        LoadedManifest::load(storage, root, &destination.image_id, &version, limits).await?
    else {
        crate::error::invalid!(
            "base version {version}: {}{} does not exist",
            crate::layout::version_prefix(root, &version),
            crate::layout::MANIFEST_NAME
        );
    };
    let manifest = &loaded.manifest;
    let mut by_digest = HashMap::new();
    for (index, entry) in manifest.chunks.iter().flatten().enumerate() {
        let index = index as u64;
        if let (false, Some(sha256)) = (entry.zero, manifest.chunk_sha256(index)) {
            by_digest
                .entry(sha256)
                .or_insert_with(|| (loaded.chunk_key(index), manifest.chunk_len(index)));
        }
    }
    Ok(Some(BaseChunks { version, by_digest }))
}
