//! `latest.json`: the pointer to an image's current version.

use super::{Manifest, LATEST_SCHEMA};
use crate::error::invalid;
use crate::{Error, Result};
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
            invalid!("latest.json is larger than {MAX_LATEST_BYTES} bytes");
        }
        let latest: Latest = serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "latest.json is not valid".into(),
            source,
        })?;
        if latest.schema != LATEST_SCHEMA {
            invalid!(
                "latest.json schema is '{}', expected '{LATEST_SCHEMA}'",
                latest.schema
            );
        }
        if latest.version.trim().is_empty() || latest.image_id.trim().is_empty() {
            invalid!("latest.json has an empty imageId or version");
        }
        Ok(latest)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("latest always serialises")
    }

    /// SPEC 1.6 rule 2 against the image the pointer is read for: `imageId` is `image_id`.
    pub fn check_image_id(&self, image_id: &str) -> Result<()> {
        if self.image_id != image_id {
            invalid!(
                "latest.json imageId '{}' is not '{image_id}'",
                self.image_id
            );
        }
        Ok(())
    }

    /// SPEC 1.6 rule 3 given the image root `root`: the version is a valid id (SPEC 3.3) and
    /// `manifestKey` is `<root><version>/manifest.json`.
    pub fn check_location(&self, root: &str) -> Result<()> {
        let expected_key =
            crate::layout::manifest_key(&crate::layout::version_prefix(root, &self.version));
        if !crate::layout::id_ok(&self.version) || self.manifest_key != expected_key {
            invalid!(
                "latest.json manifestKey '{}' should be '{expected_key}'",
                self.manifest_key
            );
        }
        Ok(())
    }

    /// Every rule of SPEC 1.6 (2 to 5) given the image root `root`, the verified manifest's
    /// key and the manifest itself; rule 1 is checked by [`Latest::parse`].
    pub fn check_against(&self, root: &str, manifest_key: &str, manifest: &Manifest) -> Result<()> {
        self.check_image_id(&manifest.image_id)?;
        self.check_location(root)?;
        if self.manifest_key == manifest_key && self.version != manifest.version {
            invalid!(
                "latest.json points at {manifest_key} but names version '{}' instead of '{}'",
                self.version,
                manifest.version
            );
        }
        if self.version == manifest.version && self.manifest_key != manifest_key {
            invalid!(
                "latest.json names version '{}' but points at {} instead of {manifest_key}",
                self.version,
                self.manifest_key
            );
        }
        Ok(())
    }
}
