//! Storage-backend plugins: each turns a table of settings into an [`opendal::Operator`].

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use async_trait::async_trait;
pub use opendal;

/// A backend's settings: the keys of the config's `[storage]` table (or of a storage URI)
/// other than `type`, as strings.
pub type Settings = BTreeMap<String, String>;

/// The user-metadata key holding an object's sha256.
pub const DIGEST_METADATA_KEY: &str = "sha256";

/// HTTP metadata stored with an object (where the backend can store it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `Content-Type`.
    pub content_type: String,
    /// `Cache-Control`.
    pub cache_control: String,
    /// `Content-Encoding`.
    pub content_encoding: String,
    /// The content's sha256 (lowercase hex), kept as user metadata `sha256` where the backend
    /// can, so re-runs recognise stored objects without reading them.
    pub sha256: Option<String>,
}

/// A storage backend plugin.
pub trait StorageBackend: Send + Sync {
    /// The backend's name, the `type` of a `[storage]` table (`fs`, `s3`, `memory`).
    fn name(&self) -> &str;

    /// The plugin's own version.
    fn version(&self) -> &str;

    /// The settings this backend accepts; any other key is an error.
    fn keys(&self) -> &[&str];

    /// Builds the storage from its settings. Unknown keys were rejected already.
    fn build(&self, settings: &Settings) -> Result<Storage>;
}

/// A configured store. Clones share the same objects.
#[derive(Clone)]
pub struct Storage {
    /// Where objects live.
    pub operator: opendal::Operator,
    /// A human-readable location (`fs:/srv/images`, `s3://bucket/root`).
    pub description: String,
    /// A cheap way to create all-zero objects, when the backend has one.
    pub zero_objects: Option<Arc<dyn ZeroObjects>>,
    /// Writes made durable by one barrier instead of one sync each, for backends whose
    /// writes are not durable when they return (`fs`); `None` when every acknowledged write
    /// is durable already (S3) or durability means nothing (memory).
    pub durability: Option<Arc<dyn Durability>>,
    /// Copies of stored objects made inside the storage (a hard link, an S3 CopyObject),
    /// when the backend can make them; `None` when every object must be written with its
    /// bytes.
    pub copies: Option<Arc<dyn ObjectCopies>>,
    /// Where objects are local files that a reader may open once and read at any offset
    /// (`fs`); `None` elsewhere.
    pub local_files: Option<Arc<dyn LocalFiles>>,
}

/// Objects that are files on this machine.
pub trait LocalFiles: Send + Sync {
    /// The path of the file holding the object `key`; an error for a key that would leave the
    /// storage's root.
    fn path(&self, key: &str) -> Result<std::path::PathBuf>;
}

/// Deferred durability: objects written without a sync each, then made durable together.
///
/// Objects written through [`Durability::write`] and [`ZeroObjects::write_zero`] are complete
/// under their final name when the call returns (a reader never sees half an object), but may
/// be lost by a machine crash until a [`Durability::sync`] naming them has returned.
#[async_trait]
pub trait Durability: Send + Sync {
    /// Writes `bytes` to `key` with `meta`, without waiting for it to be durable.
    async fn write(&self, key: &str, bytes: opendal::Buffer, meta: &ObjectMeta) -> Result<()>;

    /// The barrier: when this returns, the objects at `keys` (bytes, metadata and names) are
    /// durable, however they were written.
    async fn sync(&self, keys: &[String]) -> Result<()>;
}

/// Creates all-zero objects without uploading their bytes (a sparse file, a server-side copy).
#[async_trait]
pub trait ZeroObjects: Send + Sync {
    /// Makes `key` an object of `size` zero bytes carrying `meta`.
    async fn write_zero(
        &self,
        operator: &opendal::Operator,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
    ) -> Result<()>;
}

/// Copies made inside the storage: the bytes never pass through the caller.
///
/// A copy is complete under its name when the call returns and carries the source's
/// metadata (HTTP headers and the sha256 where the backend stores them); where the backend
/// defers durability, it is durable once a [`Durability::sync`] naming it has returned.
#[async_trait]
pub trait ObjectCopies: Send + Sync {
    /// Makes `to` a copy of the object `from` of `size` bytes. `Ok(false)` (and nothing
    /// changed) when the storage cannot copy this object now (the caller writes the bytes
    /// instead); an error when the copy failed.
    async fn copy(
        &self,
        operator: &opendal::Operator,
        from: &str,
        to: &str,
        size: u64,
    ) -> Result<bool>;
}

/// A built-in backend's entry in the `inventory` collection.
pub struct BackendRegistration {
    /// Constructs the plugin.
    pub create: fn() -> Arc<dyn StorageBackend>,
}

inventory::collect!(BackendRegistration);

/// Registers a built-in storage backend: `register_backend!(FsBackend)` where the type
/// implements [`StorageBackend`] and `Default`.
#[macro_export]
macro_rules! register_backend {
    ($ty:ty) => {
        $crate::inventory::submit! {
            $crate::backend::BackendRegistration {
                create: || ::std::sync::Arc::new(<$ty as ::std::default::Default>::default()),
            }
        }
    };
}

/// Every built-in backend, sorted by name.
pub fn builtin_backends() -> Vec<Arc<dyn StorageBackend>> {
    let mut backends: Vec<_> = inventory::iter::<BackendRegistration>
        .into_iter()
        .map(|r| (r.create)())
        .collect();
    backends.sort_by(|a, b| a.name().cmp(b.name()));
    backends
}

/// Checks `settings` against the backend's keys, then builds it.
pub fn build_storage(backend: &dyn StorageBackend, settings: &Settings) -> Result<Storage> {
    if let Some(key) = settings
        .keys()
        .find(|k| !backend.keys().contains(&k.as_str()))
    {
        return Err(Error::invalid_input(format!(
            "unknown setting '{key}' for storage type '{}' (accepted: {})",
            backend.name(),
            backend.keys().join(", ")
        )));
    }
    backend.build(settings)
}

/// Parses a boolean setting (`true/false/1/0/yes/no/on/off`).
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        _ => Err(Error::invalid_input(format!(
            "setting '{key}' must be true or false, not '{value}'"
        ))),
    }
}

/// Maps an opendal error to a plugin error with context.
pub fn storage_error(context: impl std::fmt::Display, e: opendal::Error) -> Error {
    Error::io(format!("{context}: {e}"))
}
