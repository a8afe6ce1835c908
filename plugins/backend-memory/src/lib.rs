//! The `memory` storage backend: objects live in the process (for tests and one-shot runs
//! where `aero-host run` publishes, verifies and serves in one process). Copies are made in
//! the process, keeping the source's HTTP metadata.

use aero_plugin_api::backend::{
    async_trait, opendal, storage_error, ObjectCopies, Settings, Storage, StorageBackend,
};
use aero_plugin_api::{register_backend, Error, Result};
use std::sync::Arc;

/// The `memory` backend plugin. No settings.
#[derive(Default)]
pub struct MemoryBackend;

register_backend!(MemoryBackend);

impl StorageBackend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn keys(&self) -> &[&str] {
        &[]
    }

    fn build(&self, _settings: &Settings) -> Result<Storage> {
        let operator = opendal::Operator::new(opendal::services::Memory::default())
            .map_err(|e| Error::io(format!("creating memory storage: {e}")))?;
        Ok(Storage {
            operator,
            description: "memory:".to_string(),
            zero_objects: None,
            durability: None,
            copies: Some(Arc::new(InProcessCopies)),
            local_files: None,
        })
    }
}

/// Copies of objects held in the process (opendal's memory service has no copy of its own).
struct InProcessCopies;

#[async_trait]
impl ObjectCopies for InProcessCopies {
    async fn copy(
        &self,
        operator: &opendal::Operator,
        from: &str,
        to: &str,
        size: u64,
    ) -> Result<bool> {
        let failed = |e| storage_error(format!("copying {from} to {to}"), e);
        let meta = match operator.stat(from).await {
            Ok(meta) if meta.content_length() == size => meta,
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(failed(e)),
        };
        let bytes = operator.read(from).await.map_err(failed)?;
        let mut write = operator.write_with(to, bytes);
        if let Some(v) = meta.content_type() {
            write = write.content_type(v);
        }
        if let Some(v) = meta.cache_control() {
            write = write.cache_control(v);
        }
        if let Some(v) = meta.content_encoding() {
            write = write.content_encoding(v);
        }
        write.await.map_err(failed)?;
        Ok(true)
    }
}
