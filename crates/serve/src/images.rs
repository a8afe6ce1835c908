//! Finding images in the storage backend: published chunked images under the images prefix
//! (`<prefix><id>/latest.json`, `<prefix><id>/<version>/manifest.json`) and raw objects listed
//! in the catalog, and each image's visibility (`<prefix><id>/access.json`, missing = public).
//! Pointers, manifests, the catalog, stats and visibilities are cached for a short TTL.

use crate::conditional::{derived_etag, post_epoch, Validators};
use crate::layers::errors::ApiError;
use crate::metrics::{Metrics, StoreErrorKind};
use crate::settings::Settings;
use aero_access::Visibility;
use aero_chunked::format::catalog::{self, Entry};
use aero_chunked::format::{Latest, ManifestLimits, MAX_MANIFEST_BYTES};
use aero_chunked::layout::{id_ok, image_root};
use aero_chunked::read::Origin;
use aero_chunked::resolve::{read_pointer, LoadedManifest};
use aero_chunked::store::{is_not_found, read_limited};
use aero_plugin_api::backend::opendal;
use aero_plugin_api::backend::Storage;
use axum::http::StatusCode;
use quick_cache::sync::Cache;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Why an image or artifact could not be served.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No such image / object (404).
    NotFound,
    /// Catalog, pointer or manifest unusable (500).
    Manifest(String),
    /// Storage failure (500).
    Io(String),
}

impl StoreError {
    fn io(e: opendal::Error) -> Self {
        if is_not_found(&e) {
            StoreError::NotFound
        } else {
            StoreError::Io(e.to_string())
        }
    }

    /// A failed read: the storage failed (I/O), or the content breaks a rule.
    fn of(e: aero_chunked::Error) -> Self {
        if e.is_not_found() {
            StoreError::NotFound
        } else if e.is_storage() {
            StoreError::Io(e.chain())
        } else {
            StoreError::Manifest(e.chain())
        }
    }

    /// Counts the error and makes its answer: 404, or 500 with the message (logged).
    pub fn answer(self, metrics: &Metrics) -> ApiError {
        let message = match self {
            StoreError::NotFound => return ApiError::new(StatusCode::NOT_FOUND, "not found"),
            StoreError::Manifest(m) => {
                metrics.store_error(StoreErrorKind::Manifest);
                m
            }
            StoreError::Io(m) => {
                metrics.store_error(StoreErrorKind::Meta);
                m
            }
        };
        tracing::error!("storage: {message}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, &message)
    }
}

/// An image, as the bytes and metadata endpoints see it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Suggested chunk size.
    pub recommended_chunk_size_bytes: Option<u64>,
    /// Public (cacheable) or private.
    pub public: bool,
    /// Guest-visible size in bytes.
    pub size: u64,
    /// ETag and Last-Modified.
    pub validators: Validators,
    /// Where its bytes are.
    pub source: Origin,
}

/// What a stat returned.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// Object size.
    pub size: u64,
    /// Modification time (none before 1970).
    pub last_modified: Option<SystemTime>,
}

/// Lookups reused for `cache_ttl`: at most [`TTL_ENTRIES`] of each kind, the least useful
/// evicted first when full (quick_cache's policy).
struct Ttl<K, V> {
    ttl: Duration,
    cache: Cache<K, (Instant, V)>,
}

/// Entries each lookup cache holds at most.
const TTL_ENTRIES: usize = 4096;

impl<K: Eq + Hash + Clone, V: Clone> Ttl<K, V> {
    fn new(ttl: Duration) -> Self {
        Ttl {
            ttl,
            cache: Cache::new(TTL_ENTRIES),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let (at, v) = self.cache.get(k)?;
        (at.elapsed() < self.ttl).then_some(v)
    }

    fn put(&self, k: K, v: V) {
        if !self.ttl.is_zero() {
            self.cache.insert(k, (Instant::now(), v));
        }
    }
}

type Catalog = Option<Arc<Vec<Entry>>>;

/// Image lookups over one storage.
pub struct Store {
    storage: Arc<Storage>,
    prefix: String,
    catalog_key: String,
    require_catalog: bool,
    catalog: Ttl<(), Result<Catalog, StoreError>>,
    latest: Ttl<String, Result<Latest, StoreError>>,
    manifests: Ttl<String, Result<Arc<LoadedManifest>, StoreError>>,
    stats: Ttl<String, Result<Stat, StoreError>>,
    visibilities: Ttl<String, Result<Visibility, StoreError>>,
}

fn modified(m: &opendal::Metadata) -> Option<SystemTime> {
    post_epoch(m.last_modified().map(SystemTime::from))
}

impl Store {
    /// A store over `storage` with the settings' prefix, catalog and TTL.
    pub fn new(storage: Arc<Storage>, settings: &Settings) -> Self {
        let ttl = settings.cache_ttl;
        Store {
            storage,
            prefix: settings.images_prefix.clone(),
            catalog_key: settings.catalog_key.clone(),
            require_catalog: settings.require_manifest,
            catalog: Ttl::new(ttl),
            latest: Ttl::new(ttl),
            manifests: Ttl::new(ttl),
            stats: Ttl::new(ttl),
            visibilities: Ttl::new(ttl),
        }
    }

    /// The catalog: `None` when absent (and not required).
    pub async fn catalog(&self) -> Result<Catalog, StoreError> {
        if let Some(c) = self.catalog.get(&()) {
            return c;
        }
        let result = match read_limited(&self.storage, &self.catalog_key, MAX_MANIFEST_BYTES).await
        {
            Ok(Some(buf)) => catalog::parse(&buf)
                .map(|e| Some(Arc::new(e)))
                .map_err(|e| {
                    StoreError::Manifest(format!("catalog {}: {}", self.catalog_key, e.chain()))
                }),
            Ok(None) => {
                if self.require_catalog {
                    Err(StoreError::Manifest(format!(
                        "the catalog is required but missing at {}",
                        self.catalog_key
                    )))
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(StoreError::of(e)),
        };
        self.catalog.put((), result.clone());
        result
    }

    /// The catalog entry of `id`, if any.
    pub async fn entry(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .catalog()
            .await?
            .and_then(|c| c.iter().find(|e| e.id == id).cloned()))
    }

    /// Stat of an object (cached).
    pub async fn stat(&self, key: &str) -> Result<Stat, StoreError> {
        if let Some(s) = self.stats.get(&key.to_string()) {
            return s;
        }
        let result = match self.storage.operator.stat(key).await {
            Ok(m) if m.is_dir() => Err(StoreError::NotFound),
            Ok(m) => Ok(Stat {
                size: m.content_length(),
                last_modified: modified(&m),
            }),
            Err(e) => Err(StoreError::io(e)),
        };
        self.stats.put(key.to_string(), result.clone());
        result
    }

    /// The pointer of `id`, checked (SPEC 1.6 rules 1 to 3; cached).
    async fn latest(&self, id: &str) -> Result<Latest, StoreError> {
        let root = image_root(&self.prefix, id);
        if let Some(l) = self.latest.get(&root) {
            return l;
        }
        let result = match read_pointer(&self.storage, &root, Some(id)).await {
            Ok(Some(latest)) => Ok(latest),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) => Err(StoreError::of(e)),
        };
        self.latest.put(root, result.clone());
        result
    }

    /// The manifest of `id` at `version`, which must name that image and version (cached).
    pub async fn manifest(
        &self,
        id: &str,
        version: &str,
    ) -> Result<Arc<LoadedManifest>, StoreError> {
        let root = image_root(&self.prefix, id);
        let key = format!("{root}{version}/");
        if let Some(m) = self.manifests.get(&key) {
            return m;
        }
        let result = match LoadedManifest::load(
            &self.storage,
            &root,
            id,
            version,
            ManifestLimits::default(),
        )
        .await
        {
            Ok(Some(m)) => Ok(Arc::new(m)),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) => Err(StoreError::of(e)),
        };
        self.manifests.put(key, result.clone());
        result
    }

    /// The version the unversioned chunked routes of `id` use.
    pub async fn current_version(&self, id: &str) -> Result<(String, bool), StoreError> {
        let entry = self.entry(id).await?;
        let public = entry.as_ref().is_none_or(|e| e.public);
        if let Some(v) = entry.and_then(|e| e.chunked_version) {
            return Ok((v, public));
        }
        Ok((self.latest(id).await?.version, public))
    }

    /// The visibility of `id` from its visibility object; public when it has none (cached).
    pub async fn visibility(&self, id: &str) -> Result<Visibility, StoreError> {
        if let Some(v) = self.visibilities.get(&id.to_string()) {
            return v;
        }
        let result = match aero_access::visibility::read(&self.storage, &self.prefix, id).await {
            Ok(v) => Ok(v.unwrap_or(Visibility::Public)),
            Err(e) => Err(StoreError::of(e)),
        };
        self.visibilities.put(id.to_string(), result.clone());
        result
    }

    /// Whether `id` is public (catalog entry's flag; published images default to public).
    pub async fn public(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.entry(id).await?.is_none_or(|e| e.public))
    }

    /// Resolves an image for the bytes and metadata endpoints.
    pub async fn image(&self, id: &str) -> Result<Image, StoreError> {
        let entry = self.entry(id).await?;
        if let Some(e) = &entry {
            if let Some(key) = &e.key {
                let stat = self.stat(key).await?;
                let last_modified = e.last_modified.or(stat.last_modified);
                let etag = e
                    .etag
                    .clone()
                    .unwrap_or_else(|| derived_etag(stat.size, stat.last_modified, false));
                return Ok(Image {
                    id: id.to_string(),
                    name: e.name.clone(),
                    description: e.description.clone(),
                    recommended_chunk_size_bytes: e.recommended_chunk_size_bytes,
                    public: e.public,
                    size: stat.size,
                    validators: Validators {
                        etag,
                        last_modified,
                    },
                    source: Origin::Raw(key.clone()),
                });
            }
        }
        let version = match entry.as_ref().and_then(|e| e.chunked_version.clone()) {
            Some(v) => v,
            None => self.latest(id).await?.version,
        };
        let m = self.manifest(id, &version).await?;
        Ok(Image {
            id: id.to_string(),
            name: entry
                .as_ref()
                .map_or_else(|| id.to_string(), |e| e.name.clone()),
            description: entry.as_ref().and_then(|e| e.description.clone()),
            recommended_chunk_size_bytes: entry
                .as_ref()
                .and_then(|e| e.recommended_chunk_size_bytes)
                .or(Some(m.manifest.chunk_size)),
            public: entry.as_ref().is_none_or(|e| e.public),
            size: m.manifest.total_size,
            validators: Validators {
                etag: m.etag.clone(),
                last_modified: m.last_modified,
            },
            source: Origin::Chunked(m),
        })
    }

    /// Ids of the published chunked images (directories under the prefix holding latest.json).
    async fn published_ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = match self
            .storage
            .operator
            .list_with(&self.prefix)
            .recursive(false)
            .await
        {
            Ok(e) => e,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io(e.to_string())),
        };
        let mut ids = Vec::new();
        for e in entries {
            let name = e.name().trim_end_matches('/');
            if e.metadata().is_dir() && id_ok(name) {
                match self.latest(name).await {
                    Ok(_) => ids.push(name.to_string()),
                    Err(StoreError::NotFound) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every image: catalog entries in catalog order, then published images not in the catalog.
    pub async fn list(&self) -> Result<Vec<Image>, StoreError> {
        let catalog = self.catalog().await?;
        let mut out = Vec::new();
        if let Some(c) = &catalog {
            for e in c.iter() {
                out.push(self.image(&e.id).await?);
            }
        }
        for id in self.published_ids().await? {
            if catalog
                .as_ref()
                .is_some_and(|c| c.iter().any(|e| e.id == id))
            {
                continue;
            }
            out.push(self.image(&id).await?);
        }
        Ok(out)
    }
}
