//! The host's catalogue of plugins: built-ins collected by `inventory`, plus dynamic
//! libraries, seen through the same traits.

use aero_plugin_api::backend::{builtin_backends, StorageBackend};
use aero_plugin_api::Registry;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::sync::Arc;

// Built-in plugins register themselves when linked; these keep the crates linked.
use backend_fs as _;
use backend_memory as _;
use backend_s3 as _;
use format_aerosparse as _;
use format_qcow2 as _;
use format_raw as _;
use format_vhd as _;

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled into aero-host.
    Builtin,
    /// Loaded from a dynamic library.
    Library(String),
}

/// One row of `plugins list`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRow {
    /// `format` or `backend`.
    pub kind: &'static str,
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Plugin-API version it was built for.
    pub api_version: u32,
    /// `builtin` or the library path.
    pub origin: String,
    /// What it can do.
    pub capabilities: Vec<String>,
}

/// All plugins the host can use.
pub struct Catalogue {
    formats: Registry,
    origins: Vec<(String, Origin)>,
    backends: Vec<Arc<dyn StorageBackend>>,
}

impl Catalogue {
    /// The built-in plugins.
    pub fn builtin() -> Result<Self> {
        let formats = Registry::builtin().map_err(|e| anyhow!("{e}"))?;
        let origins = formats
            .formats()
            .iter()
            .map(|f| (f.name().to_string(), Origin::Builtin))
            .collect();
        Ok(Catalogue {
            formats,
            origins,
            backends: builtin_backends(),
        })
    }

    /// The format plugins.
    pub fn formats(&self) -> &Registry {
        &self.formats
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn StorageBackend>> {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
                anyhow!(
                    "unknown storage type '{name}' (known: {})",
                    known.join(", ")
                )
            })
    }

    /// Rows for `plugins list`.
    pub fn rows(&self) -> Vec<PluginRow> {
        let mut rows: Vec<PluginRow> = self
            .formats
            .formats()
            .iter()
            .map(|f| {
                let origin = self
                    .origins
                    .iter()
                    .find(|(n, _)| n == f.name())
                    .map(|(_, o)| o.clone())
                    .unwrap_or(Origin::Builtin);
                let mut capabilities = vec![
                    "read".to_string(),
                    "probe".to_string(),
                    "block-status".to_string(),
                ];
                if f.name() == "aerosparse" {
                    capabilities.push("write".to_string());
                }
                PluginRow {
                    kind: "format",
                    name: f.name().to_string(),
                    version: f.version().to_string(),
                    api_version: f.api_version(),
                    origin: match origin {
                        Origin::Builtin => "builtin".to_string(),
                        Origin::Library(p) => p,
                    },
                    capabilities,
                }
            })
            .collect();
        rows.extend(self.backends.iter().map(|b| PluginRow {
            kind: "backend",
            name: b.name().to_string(),
            version: b.version().to_string(),
            api_version: aero_plugin_api::PLUGIN_API_VERSION,
            origin: "builtin".to_string(),
            capabilities: b.keys().iter().map(|k| format!("setting:{k}")).collect(),
        }));
        rows
    }
}
