//! The `memory` storage backend: objects live in the process (for tests and one-shot runs
//! where `aero-host run` publishes, verifies and serves in one process).

use aero_plugin_api::backend::{opendal, Settings, Storage, StorageBackend};
use aero_plugin_api::{register_backend, Error, Result};

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
        })
    }
}
