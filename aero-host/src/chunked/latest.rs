//! `latest.json`: the pointer to an image's current version.

use super::{Manifest, LATEST_SCHEMA};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Largest `latest.json` (and `meta.json`) readers accept.
pub const MAX_LATEST_BYTES: u64 = 1024 * 1024;

/// The pointer (SPEC 1.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latest {
    /// Always [`LATEST_SCHEMA`].
    pub schema: String,
    /// Image id.
    pub image_id: String,
    /// Current version.
    pub version: String,
    /// Object key of the versioned manifest.
    pub manifest_key: String,
}

impl Latest {
    /// A pointer to `manifest_key`.
    pub fn new(image_id: &str, version: &str, manifest_key: &str) -> Self {
        Latest {
            schema: LATEST_SCHEMA.to_string(),
            image_id: image_id.to_string(),
            version: version.to_string(),
            manifest_key: manifest_key.to_string(),
        }
    }

    /// Parses pointer bytes and checks the schema.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_LATEST_BYTES {
            bail!("latest.json is larger than {MAX_LATEST_BYTES} bytes");
        }
        let latest: Latest = serde_json::from_slice(bytes).context("latest.json is not valid")?;
        if latest.schema != LATEST_SCHEMA {
            bail!(
                "latest.json schema is '{}', expected '{LATEST_SCHEMA}'",
                latest.schema
            );
        }
        if latest.version.trim().is_empty() || latest.image_id.trim().is_empty() {
            bail!("latest.json has an empty imageId or version");
        }
        Ok(latest)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("latest always serialises")
    }

    /// The rules of SPEC 1.6 given the image root `root`, the verified manifest's key and
    /// the manifest itself.
    pub fn check_against(&self, root: &str, manifest_key: &str, manifest: &Manifest) -> Result<()> {
        if self.image_id != manifest.image_id {
            bail!(
                "latest.json imageId '{}' differs from the manifest's '{}'",
                self.image_id,
                manifest.image_id
            );
        }
        let expected_key = format!("{root}{}/manifest.json", self.version);
        if self.manifest_key != expected_key {
            bail!(
                "latest.json manifestKey '{}' should be '{expected_key}'",
                self.manifest_key
            );
        }
        if self.manifest_key == manifest_key && self.version != manifest.version {
            bail!(
                "latest.json points at {manifest_key} but names version '{}' instead of '{}'",
                self.version,
                manifest.version
            );
        }
        if self.version == manifest.version && self.manifest_key != manifest_key {
            bail!(
                "latest.json names version '{}' but points at {} instead of {manifest_key}",
                self.version,
                self.manifest_key
            );
        }
        Ok(())
    }
}
