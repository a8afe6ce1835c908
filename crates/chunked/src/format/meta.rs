//! `meta.json`: the publisher's side-car beside the manifest.

use super::Manifest;
use crate::error::invalid;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The side-car written unless `--no-meta` (SPEC 1.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// RFC 3339 UTC time of publishing.
    pub created_at: String,
    /// Final path component of the input image.
    pub original_filename: String,
    /// Guest-visible disk size.
    pub total_size: u64,
    /// Chunk size.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// `sha256` or `none`.
    pub checksum_algorithm: String,
}

impl Meta {
    /// Parses meta bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "meta.json is not valid".into(),
            source,
        })
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("meta always serialises")
    }

    /// Checks that the geometry agrees with the manifest.
    pub fn check_against(&self, manifest: &Manifest) -> Result<()> {
        for (name, meta, man) in [
            ("totalSize", self.total_size, manifest.total_size),
            ("chunkSize", self.chunk_size, manifest.chunk_size),
            ("chunkCount", self.chunk_count, manifest.chunk_count),
        ] {
            if meta != man {
                invalid!("meta.json {name} is {meta} but the manifest says {man}");
            }
        }
        Ok(())
    }
}
