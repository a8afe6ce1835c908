//! The `fs` storage backend: objects are files under a root directory.
//!
//! Files carry no HTTP metadata; readers (verify, serve) derive it from the object's role.
//! All-zero objects are sparse files, so zero chunks cost no disk space.

use aero_plugin_api::backend::{
    async_trait, opendal, ObjectMeta, Settings, Storage, StorageBackend, ZeroObjects,
};
use aero_plugin_api::{register_backend, Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `fs` backend plugin. Settings: `root` (a directory, created when missing).
#[derive(Default)]
pub struct FsBackend;

register_backend!(FsBackend);

/// Name of the directory under the root where objects are written before being renamed
/// into place, so a crash never leaves a half-written object under its final name.
pub const STAGING_DIR: &str = ".aero-staging";

impl StorageBackend for FsBackend {
    fn name(&self) -> &str {
        "fs"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn keys(&self) -> &[&str] {
        &["root"]
    }

    fn build(&self, settings: &Settings) -> Result<Storage> {
        let root = settings
            .get("root")
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| Error::invalid_input("storage type 'fs' needs a 'root' directory"))?;
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating storage root {root}: {e}")))?;
        let root = Path::new(root)
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving storage root {root}: {e}")))?;
        let root_str = root.to_string_lossy().to_string();
        let staging = root.join(STAGING_DIR);
        let builder = opendal::services::Fs::default()
            .root(&root_str)
            .atomic_write_dir(&staging.to_string_lossy());
        let operator = opendal::Operator::new(builder)
            .map_err(|e| Error::io(format!("opening storage root {root_str}: {e}")))?;
        Ok(Storage {
            operator,
            description: format!("fs:{root_str}"),
            zero_objects: Some(Arc::new(SparseFiles { root })),
        })
    }
}

/// Writes all-zero objects as sparse files sized with `set_len`.
struct SparseFiles {
    root: PathBuf,
}

#[async_trait]
impl ZeroObjects for SparseFiles {
    async fn write_zero(
        &self,
        _operator: &opendal::Operator,
        key: &str,
        size: u64,
        _meta: &ObjectMeta,
    ) -> Result<()> {
        if key.split('/').any(|c| c == ".." || c == ".") || key.starts_with('/') {
            return Err(Error::invalid_input(format!("invalid object key '{key}'")));
        }
        let target = self.root.join(key);
        // A couple of metadata syscalls: cheap enough to run on the async thread. A sparse
        // file is created whole by `set_len`, so no staging is needed: an interrupted create
        // leaves at worst an empty file, which a re-run sees has the wrong size and replaces.
        sparse_file(&target, size).map_err(|e| Error::io(format!("writing zero object {key}: {e}")))
    }
}

/// Creates (or replaces) a sparse file of `size` bytes, creating its directory when missing.
fn sparse_file(path: &Path, size: u64) -> std::io::Result<()> {
    let create = || std::fs::File::create(path)?.set_len(size);
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            create()
        }
        other => other,
    }
}
