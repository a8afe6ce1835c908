//! Finding a checked manifest: by key, by prefix (a version directory, or an image root
//! through its `latest.json`), by version, by URL or by local file. Every reader (verify,
//! serve) goes through here, so the pointer rules of SPEC 1.6 are applied in one place:
//!
//! 1. `schema` is the pointer schema ([`Latest::parse`]);
//! 2. `imageId` is the image's (the served id, or the manifest's);
//! 3. `manifestKey` is `<image root><version>/manifest.json`, the version a valid id;
//! 4. a pointer at the manifest names the manifest's version;
//! 5. a pointer naming the manifest's version points at it;
//! 6. a pointer found beside a version directory that names another version must point at an
//!    existing manifest.
//!
//! Rules 1 and 3 (and 2 when the image id is known) hold for every pointer read with
//! [`read_pointer`]; rules 2 to 5 against the manifest, and 6, are [`Resolved::check_pointer`].

use crate::error::invalid;
use crate::format::{
    sha256_hex, Latest, Manifest, ManifestLimits, MAX_LATEST_BYTES, MAX_MANIFEST_BYTES,
};
use crate::layout::{
    latest_key, manifest_key, normalize_prefix, resolve_destination, DestinationRequest,
    MANIFEST_NAME,
};
use crate::source::{read_file, HttpSource, Source};
use crate::store::{read_limited, read_limited_with_meta, stat};
use crate::{Context, Error, Result};
use aero_plugin_api::backend::Storage;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where to find a manifest.
pub enum Locator {
    /// An explicit manifest key.
    Key {
        /// The storage.
        storage: Arc<Storage>,
        /// The key (a leading `/` is ignored).
        key: String,
    },
    /// A prefix: with `version`, that version under the image root `prefix`; else the version
    /// directory `prefix` when it holds a manifest, else the version `prefix/latest.json`
    /// points at.
    Prefix {
        /// The storage.
        storage: Arc<Storage>,
        /// The prefix.
        prefix: String,
        /// The image id, when known (with `version`, it places the version).
        image_id: Option<String>,
        /// The version.
        version: Option<String>,
    },
    /// A manifest URL; objects resolve relative to it.
    Url(HttpSource),
    /// A local manifest file; objects resolve relative to its directory.
    File(PathBuf),
}

/// A parsed and checked manifest, and where its objects are.
pub struct Resolved {
    /// The manifest.
    pub manifest: Manifest,
    /// Where it was, for messages: `<storage>/<key>`, a URL or a path.
    pub location: String,
    /// Its objects (`meta.json`, chunks).
    pub source: Source,
    /// Set when the manifest came from a storage: what the pointer check needs.
    stored: Option<Stored>,
}

/// A manifest found in a storage, and the pointer that led to it, if one did.
struct Stored {
    storage: Arc<Storage>,
    key: String,
    pointer: Option<Pointer>,
}

/// A `latest.json` read at the image root `root`.
struct Pointer {
    root: String,
    latest: Latest,
}

/// Finds, reads, parses and checks the manifest `locator` names.
pub async fn resolve(locator: Locator, limits: ManifestLimits) -> Result<Resolved> {
    match locator {
        Locator::Key { storage, key } => {
            let key = key.trim_start_matches('/').to_string();
            from_storage(storage, key, None, false, limits).await
        }
        Locator::Prefix {
            storage,
            prefix,
            image_id,
            version,
        } => {
            let prefix = normalize_prefix(&prefix);
            if let Some(version) = &version {
                let destination = resolve_destination(&DestinationRequest {
                    prefix: &prefix,
                    image_id: image_id.as_deref(),
                    image_version: Some(version),
                    computed_version: None,
                })?;
                return from_storage(storage, destination.manifest_key(), None, true, limits).await;
            }
            let key = manifest_key(&prefix);
            if stat(&storage, &key).await?.is_some() {
                return from_storage(storage, key, None, true, limits).await;
            }
            let Some(latest) = read_pointer(&storage, &prefix, None).await? else {
                invalid!(
                    "neither {key} nor {} exists in {}: give the version's prefix, --image-version, or --manifest-key",
                    latest_key(&prefix),
                    storage.description
                );
            };
            let key = latest.manifest_key.clone();
            let pointer = Pointer {
                root: prefix,
                latest,
            };
            from_storage(storage, key, Some(pointer), true, limits).await
        }
        Locator::Url(http) => {
            let url = http.base().clone();
            let bytes = http
                .get(&url, MAX_MANIFEST_BYTES)
                .await?
                .ok_or_else(|| Error::Http(format!("manifest {url} not found (404)")))?;
            let manifest =
                Manifest::parse(&bytes, limits).with_context(|| format!("checking {url}"))?;
            Ok(Resolved {
                manifest,
                location: url.to_string(),
                source: Source::Http(http),
                stored: None,
            })
        }
        Locator::File(path) => {
            let bytes = read_file(&path, MAX_MANIFEST_BYTES, "allowed for a manifest").await?;
            let manifest = Manifest::parse(&bytes, limits)
                .with_context(|| format!("checking {}", path.display()))?;
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            Ok(Resolved {
                manifest,
                location: path.display().to_string(),
                source: Source::File { dir },
                stored: None,
            })
        }
    }
}

/// Reads and checks the manifest at `key`; with `at_location`, its image id and version must
/// be the last two segments of its directory when it has two.
async fn from_storage(
    storage: Arc<Storage>,
    key: String,
    pointer: Option<Pointer>,
    at_location: bool,
    limits: ManifestLimits,
) -> Result<Resolved> {
    let Some(dir) = key.strip_suffix(MANIFEST_NAME) else {
        invalid!("manifest key '{key}' must end with {MANIFEST_NAME}");
    };
    let bytes = read_limited(&storage, &key, MAX_MANIFEST_BYTES)
        .await?
        .ok_or_else(|| {
            Error::invalid(format!(
                "manifest {key} not found in {}",
                storage.description
            ))
        })?;
    let manifest = Manifest::parse(&bytes, limits).with_context(|| format!("checking {key}"))?;
    if at_location {
        let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        if let [.., id, version] = segments[..] {
            check_identity(&key, &manifest, id, version)?;
        }
    }
    Ok(Resolved {
        location: format!("{}/{key}", storage.description),
        source: Source::Storage {
            storage: Arc::clone(&storage),
            dir: dir.to_string(),
        },
        manifest,
        stored: Some(Stored {
            storage,
            key,
            pointer,
        }),
    })
}

/// A manifest's image id and version are those of its location.
fn check_identity(key: &str, manifest: &Manifest, image_id: &str, version: &str) -> Result<()> {
    if manifest.image_id != image_id || manifest.version != version {
        invalid!(
            "{key} names image '{}' version '{}', not '{image_id}' version '{version}'",
            manifest.image_id,
            manifest.version
        );
    }
    Ok(())
}

/// The `latest.json` of the image root `root`, `None` when there is none, checked against
/// SPEC 1.6 rules 1 and 3, and rule 2 when `image_id` is given.
pub async fn read_pointer(
    storage: &Storage,
    root: &str,
    image_id: Option<&str>,
) -> Result<Option<Latest>> {
    let key = latest_key(root);
    let Some(bytes) = read_limited(storage, &key, MAX_LATEST_BYTES).await? else {
        return Ok(None);
    };
    let check = || -> Result<Latest> {
        let latest = Latest::parse(&bytes)?;
        if let Some(id) = image_id {
            latest.check_image_id(id)?;
        }
        latest.check_location(root)?;
        Ok(latest)
    };
    check().map(Some).with_context(|| format!("checking {key}"))
}

impl Resolved {
    /// Checks the pointer that led to a stored manifest against SPEC 1.6 rules 2 to 5, or else a
    /// `latest.json` beside the version directory (with rule 6 when it names another version).
    /// Returns a note on what was checked; `None` when there is no pointer (or the manifest did
    /// not come from a storage).
    pub async fn check_pointer(&self) -> Result<Option<String>> {
        let Some(Stored {
            storage,
            key,
            pointer,
        }) = &self.stored
        else {
            return Ok(None);
        };
        let manifest = &self.manifest;
        let (root, latest) = match pointer {
            Some(p) => (p.root.clone(), p.latest.clone()),
            None => {
                let dir = key.trim_end_matches(MANIFEST_NAME).trim_end_matches('/');
                let root = match dir.rfind('/') {
                    Some(i) => dir[..=i].to_string(),
                    None => String::new(),
                };
                let Some(latest) = read_pointer(storage, &root, None).await? else {
                    return Ok(None);
                };
                let latest_key = latest_key(&root);
                if latest.manifest_key != *key {
                    latest
                        .check_against(&root, key, manifest)
                        .with_context(|| format!("checking {latest_key}"))?;
                    if stat(storage, &latest.manifest_key).await?.is_none() {
                        invalid!(
                            "{latest_key} points at {}, which does not exist",
                            latest.manifest_key
                        );
                    }
                    return Ok(Some(format!(
                        "{latest_key} points at another version, {}",
                        latest.version
                    )));
                }
                (root, latest)
            }
        };
        let latest_key = latest_key(&root);
        latest
            .check_against(&root, key, manifest)
            .with_context(|| format!("checking {latest_key}"))?;
        Ok(Some(format!("{latest_key} points at this version")))
    }
}

/// A manifest read from a storage for serving, with what identifies its content.
#[derive(Debug)]
pub struct LoadedManifest {
    /// `<image root><version>/`.
    pub version_prefix: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The bytes as stored.
    pub bytes: Bytes,
    /// `"<sha256 of bytes>"`.
    pub etag: String,
    /// The manifest object's modification time (none before 1970).
    pub last_modified: Option<SystemTime>,
}

impl LoadedManifest {
    /// Reads version `version` of image `image_id` under the image root `root` (`None` when
    /// its manifest does not exist), and checks it names that image and version.
    pub async fn load(
        storage: &Storage,
        root: &str,
        image_id: &str,
        version: &str,
        limits: ManifestLimits,
    ) -> Result<Option<Self>> {
        let version_prefix = crate::layout::version_prefix(root, version);
        let key = manifest_key(&version_prefix);
        let Some((bytes, meta)) = read_limited_with_meta(storage, &key, MAX_MANIFEST_BYTES).await?
        else {
            return Ok(None);
        };
        let manifest =
            Manifest::parse(&bytes, limits).with_context(|| format!("checking {key}"))?;
        check_identity(&key, &manifest, image_id, version)?;
        Ok(Some(LoadedManifest {
            version_prefix,
            etag: format!("\"{}\"", sha256_hex(&bytes)),
            manifest,
            bytes,
            last_modified: meta
                .last_modified()
                .map(SystemTime::from)
                .filter(|t| *t >= UNIX_EPOCH),
        }))
    }

    /// The key of chunk `index`, named as the manifest says.
    pub fn chunk_key(&self, index: u64) -> String {
        format!("{}{}", self.version_prefix, self.manifest.chunk_name(index))
    }
}
