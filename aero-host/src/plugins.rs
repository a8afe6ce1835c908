//! The host's catalogue of plugins: built-ins collected by `inventory`, plus dynamic
//! libraries, seen through the same traits.

use aero_plugin_api::abi::load_plugin;
use aero_plugin_api::backend::{builtin_backends, StorageBackend};
use aero_plugin_api::Registry;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
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

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::Library(path) => f.write_str(path),
        }
    }
}

/// What a built-in format plugin can do.
fn capabilities_of(name: &str) -> String {
    let mut caps = "read,probe,zero-extents".to_string();
    if matches!(name, "qcow2" | "vhd") {
        caps.push_str(",backing-files");
    }
    if name == "aerosparse" {
        caps.push_str(",write");
    }
    caps
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
    origins: Vec<(String, Origin, String)>,
    backends: Vec<Arc<dyn StorageBackend>>,
}

/// Which dynamic libraries to load.
#[derive(Debug, Clone, Default)]
pub struct LibrarySelection {
    /// Library files (`--plugin PATH`, `[plugins] paths`).
    pub paths: Vec<PathBuf>,
    /// A directory whose `*.so` files are loaded (`[plugins] dir`).
    pub dir: Option<PathBuf>,
    /// Names whose library wins over a built-in or earlier plugin of the same name.
    pub prefer_library: Vec<String>,
}

impl LibrarySelection {
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = self.paths.clone();
        if let Some(dir) = &self.dir {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading plugin directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so" || x == "dylib"))
                .collect();
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }
}

impl Catalogue {
    /// The built-in plugins.
    pub fn builtin() -> Result<Self> {
        let formats = Registry::builtin().map_err(|e| anyhow!("{e}"))?;
        let origins = formats
            .formats()
            .iter()
            .map(|f| {
                let caps = capabilities_of(f.name());
                (f.name().to_string(), Origin::Builtin, caps)
            })
            .collect();
        Ok(Catalogue {
            formats,
            origins,
            backends: builtin_backends(),
        })
    }

    /// The built-ins plus the selected libraries. A library whose plugin name is taken is an
    /// error unless the name is in `prefer_library`, in which case the library wins.
    pub fn load(selection: &LibrarySelection) -> Result<Self> {
        let mut catalogue = Self::builtin()?;
        for path in selection.files()? {
            catalogue.load_library(&path, &selection.prefer_library)?;
        }
        Ok(catalogue)
    }

    fn load_library(&mut self, path: &Path, prefer: &[String]) -> Result<()> {
        let loaded = load_plugin(path).map_err(|e| anyhow!("{e}"))?;
        let name = loaded.format.name().to_string();
        if prefer.contains(&name) {
            self.formats.replace(Arc::clone(&loaded.format));
            self.origins.retain(|(n, _, _)| n != &name);
        } else if let Some((_, from, _)) = self.origins.iter().find(|(n, _, _)| n == &name) {
            bail!(
                "plugin {} provides format '{name}', which {from} already provides; \
                 remove one, or add \"{name}\" to prefer_library in [plugins] to let the library win",
                path.display()
            );
        } else {
            self.formats
                .add(Arc::clone(&loaded.format))
                .map_err(|e| anyhow!("{} ({e})", path.display()))?;
        }
        let caps = format!("read,probe,{}", loaded.capabilities).replace(", ", ",");
        let origin = Origin::Library(path.display().to_string());
        self.origins.push((name, origin, caps));
        Ok(())
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
                let (origin, capabilities) = self
                    .origins
                    .iter()
                    .find(|(n, _, _)| n == f.name())
                    .map(|(_, o, c)| (o.to_string(), c.split(',').map(str::to_string).collect()))
                    .unwrap_or_default();
                PluginRow {
                    kind: "format",
                    name: f.name().to_string(),
                    version: f.version().to_string(),
                    api_version: f.api_version(),
                    origin,
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
