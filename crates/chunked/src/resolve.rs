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
    sha256_hex, Latest, Manifest, ManifestLimits, MANIFEST_VERSION_PREFIX, MAX_LATEST_BYTES,
    MAX_MANIFEST_BYTES,
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
            let dir = url.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            check_directory_version(url.as_str(), &manifest, dir)?;
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
            if let Some(name) = dir.file_name() {
                check_directory_version(
                    &path.display().to_string(),
                    &manifest,
                    &name.to_string_lossy(),
                )?;
            }
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
    check_directory_version(&key, &manifest, dir)?;
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

/// A manifest in a directory named by a version that authenticates manifests (`mh1-…`) has
/// that version, which its own content was checked against when it was parsed: so a manifest
/// of another version copied into the directory is refused too.
fn check_directory_version(location: &str, manifest: &Manifest, dir: &str) -> Result<()> {
    let named = dir.rsplit('/').find(|s| !s.is_empty()).unwrap_or_default();
    if named.starts_with(MANIFEST_VERSION_PREFIX) && named != manifest.version {
        invalid!(
            "{location} is in the directory of version {named} but names version '{}'",
            manifest.version
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ChunkEntry;
    use crate::layout::ObjectKind;
    use crate::store::{put, CacheControls};
    use aero_plugin_api::backend::{build_storage, Settings};

    fn memory() -> Arc<Storage> {
        Arc::new(build_storage(&backend_memory::MemoryBackend, &Settings::new()).unwrap())
    }

    fn controls() -> CacheControls {
        CacheControls {
            chunks: "no-transform".into(),
            manifest: "no-transform".into(),
            latest: "no-transform".into(),
        }
    }

    async fn put_manifest(storage: &Storage, key: &str, id: &str, version: &str) {
        let chunks = vec![ChunkEntry {
            size: Some(512),
            sha256: None,
            zero: false,
        }];
        let manifest = Manifest::new(id, version, 512, 512, chunks);
        let meta = controls().meta(ObjectKind::Manifest);
        put(storage, key, manifest.to_json(), &meta).await.unwrap();
    }

    async fn put_latest(storage: &Storage, root: &str, latest: &Latest) {
        let meta = controls().meta(ObjectKind::Latest);
        put(storage, &latest_key(root), latest.to_json(), &meta)
            .await
            .unwrap();
    }

    fn by_prefix(storage: &Arc<Storage>, prefix: &str) -> Locator {
        Locator::Prefix {
            storage: Arc::clone(storage),
            prefix: prefix.into(),
            image_id: None,
            version: None,
        }
    }

    fn by_key(storage: &Arc<Storage>, key: &str) -> Locator {
        Locator::Key {
            storage: Arc::clone(storage),
            key: key.into(),
        }
    }

    async fn error_of(locator: Locator) -> String {
        let text = match resolve(locator, ManifestLimits::default()).await {
            Ok(resolved) => resolved.check_pointer().await.unwrap_err(),
            Err(e) => e,
        };
        text.chain()
    }

    #[tokio::test]
    async fn follows_a_good_pointer_and_notes_it() {
        let s = memory();
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "v1", "images/disk/v1/manifest.json"),
        )
        .await;
        let resolved = resolve(by_prefix(&s, "images/disk"), ManifestLimits::default())
            .await
            .unwrap();
        assert_eq!(resolved.manifest.version, "v1");
        assert_eq!(
            resolved.source.location("meta.json"),
            "images/disk/v1/meta.json"
        );
        let note = resolved.check_pointer().await.unwrap().unwrap();
        assert_eq!(note, "images/disk/latest.json points at this version");
        // The same pointer, found from the version directory.
        let resolved = resolve(by_prefix(&s, "images/disk/v1/"), ManifestLimits::default())
            .await
            .unwrap();
        assert_eq!(
            resolved.check_pointer().await.unwrap().unwrap(),
            "images/disk/latest.json points at this version"
        );
        // The serving path: the pointer with its image id, then the version's manifest.
        let latest = read_pointer(&s, "images/disk/", Some("disk"))
            .await
            .unwrap()
            .unwrap();
        let loaded = LoadedManifest::load(
            &s,
            "images/disk/",
            "disk",
            &latest.version,
            ManifestLimits::default(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(loaded.chunk_key(0), "images/disk/v1/chunks/00000000.bin");
        assert!(read_pointer(&s, "images/none/", None)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn rule_1_the_schema() {
        let s = memory();
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        let mut latest = Latest::new("disk", "v1", "images/disk/v1/manifest.json");
        latest.schema = "aero.other".into();
        put_latest(&s, "images/disk/", &latest).await;
        let err = error_of(by_prefix(&s, "images/disk/")).await;
        assert!(err.contains("schema"), "{err}");
        assert!(read_pointer(&s, "images/disk/", Some("disk"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn rule_2_the_image_id() {
        let s = memory();
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("other", "v1", "images/disk/v1/manifest.json"),
        )
        .await;
        let err = error_of(by_prefix(&s, "images/disk/")).await;
        assert!(err.contains("imageId 'other'"), "{err}");
        let err = read_pointer(&s, "images/disk/", Some("disk"))
            .await
            .unwrap_err()
            .chain();
        assert!(err.contains("imageId 'other' is not 'disk'"), "{err}");
    }

    #[tokio::test]
    async fn rule_3_the_manifest_key() {
        let s = memory();
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        put_manifest(&s, "elsewhere/v1/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "v1", "elsewhere/v1/manifest.json"),
        )
        .await;
        let err = error_of(by_prefix(&s, "images/disk/")).await;
        assert!(
            err.contains("should be 'images/disk/v1/manifest.json'"),
            "{err}"
        );
        // A version that is not an id cannot name a key.
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "../v1", "images/disk/../v1/manifest.json"),
        )
        .await;
        let err = read_pointer(&s, "images/disk/", None)
            .await
            .unwrap_err()
            .chain();
        assert!(err.contains("manifestKey"), "{err}");
    }

    #[tokio::test]
    async fn rule_4_a_pointer_at_the_manifest_names_its_version() {
        let s = memory();
        // The manifest at v2/ says it is v1.
        put_manifest(&s, "images/disk/v2/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "v2", "images/disk/v2/manifest.json"),
        )
        .await;
        let err = error_of(by_key(&s, "images/disk/v2/manifest.json")).await;
        assert!(err.contains("names version 'v2' instead of 'v1'"), "{err}");
        // Found through the pointer, the manifest's location disagrees first.
        let err = error_of(by_prefix(&s, "images/disk/")).await;
        assert!(err.contains("not 'disk' version 'v2'"), "{err}");
    }

    #[tokio::test]
    async fn rule_5_a_pointer_naming_the_version_points_at_the_manifest() {
        let s = memory();
        put_manifest(&s, "images/disk/copy/manifest.json", "disk", "v1").await;
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "v1", "images/disk/v1/manifest.json"),
        )
        .await;
        let err = error_of(by_key(&s, "images/disk/copy/manifest.json")).await;
        assert!(
            err.contains("names version 'v1' but points at images/disk/v1/manifest.json instead of images/disk/copy/manifest.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rule_6_a_pointer_at_another_version_must_exist() {
        let s = memory();
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        put_latest(
            &s,
            "images/disk/",
            &Latest::new("disk", "v2", "images/disk/v2/manifest.json"),
        )
        .await;
        let err = error_of(by_prefix(&s, "images/disk/v1/")).await;
        assert!(
            err.contains("images/disk/latest.json points at images/disk/v2/manifest.json, which does not exist"),
            "{err}"
        );
        put_manifest(&s, "images/disk/v2/manifest.json", "disk", "v2").await;
        let resolved = resolve(by_prefix(&s, "images/disk/v1/"), ManifestLimits::default())
            .await
            .unwrap();
        assert_eq!(
            resolved.check_pointer().await.unwrap().unwrap(),
            "images/disk/latest.json points at another version, v2"
        );
    }

    #[tokio::test]
    async fn nothing_there_and_explicit_versions() {
        let s = memory();
        let err = error_of(by_prefix(&s, "images/other/")).await;
        assert!(
            err.contains("neither images/other/manifest.json nor images/other/latest.json exists"),
            "{err}"
        );
        put_manifest(&s, "images/disk/v1/manifest.json", "disk", "v1").await;
        let resolved = resolve(
            Locator::Prefix {
                storage: Arc::clone(&s),
                prefix: "images/disk/".into(),
                image_id: None,
                version: Some("v1".into()),
            },
            ManifestLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            resolved.location,
            format!("{}/images/disk/v1/manifest.json", s.description)
        );
        assert!(resolved.check_pointer().await.unwrap().is_none());
        assert!(
            LoadedManifest::load(&s, "images/disk/", "disk", "v9", ManifestLimits::default())
                .await
                .unwrap()
                .is_none()
        );
        let err =
            LoadedManifest::load(&s, "images/", "disk", "v1", ManifestLimits::default()).await;
        assert!(err.is_ok_and(|m| m.is_none()));
    }
}
