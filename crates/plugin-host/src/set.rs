//! The plugin set: built-in plugins collected by `inventory`, plus format plugins loaded from
//! libraries, seen through the same traits, each with its origin.

use crate::library::load_plugin;
use crate::{Error, Result};
use aero_plugin_api::backend::{builtin_backends, StorageBackend};
use aero_plugin_api::{DiskFormat, Registry};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the host.
    Builtin,
    /// Loaded from a dynamic library.
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::Library(path) => write!(f, "{}", path.display()),
        }
    }
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
    /// The library files: the paths, then the directory's libraries sorted by name.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = self.paths.clone();
        if let Some(dir) = &self.dir {
            let entries = std::fs::read_dir(dir).map_err(|cause| Error::PluginDir {
                dir: dir.clone(),
                cause,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so" || x == "dylib"))
                .collect();
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }
}

/// Every plugin the host can use.
pub struct PluginSet {
    formats: Registry,
    origins: Vec<(String, Origin)>,
    backends: Vec<Arc<dyn StorageBackend>>,
}

impl PluginSet {
    /// The built-in plugins.
    pub fn builtin() -> Result<Self> {
        let formats = Registry::builtin()?;
        let origins = formats
            .formats()
            .iter()
            .map(|f| (f.name().to_string(), Origin::Builtin))
            .collect();
        Ok(PluginSet {
            formats,
            origins,
            backends: builtin_backends(),
        })
    }

    /// The built-ins plus the selected libraries. A library whose plugin name is taken is an
    /// error unless the name is in `prefer_library`, in which case the library wins.
    pub fn load(selection: &LibrarySelection) -> Result<Self> {
        let mut set = Self::builtin()?;
        for path in selection.files()? {
            set.load_library(&path, &selection.prefer_library)?;
        }
        Ok(set)
    }

    fn load_library(&mut self, path: &Path, prefer: &[String]) -> Result<()> {
        let loaded = load_plugin(path)?;
        let name = loaded.format.name().to_string();
        if prefer.contains(&name) {
            self.formats.replace(Arc::clone(&loaded.format));
            self.origins.retain(|(n, _)| n != &name);
        } else if let Some((_, from)) = self.origins.iter().find(|(n, _)| n == &name) {
            return Err(Error::NameTaken {
                library: path.to_path_buf(),
                name,
                origin: from.to_string(),
            });
        } else {
            self.formats
                .add(Arc::clone(&loaded.format))
                .map_err(|cause| Error::Rejected {
                    library: path.to_path_buf(),
                    cause,
                })?;
        }
        self.origins
            .push((name, Origin::Library(path.to_path_buf())));
        Ok(())
    }

    /// The format plugins.
    pub fn formats(&self) -> &Registry {
        &self.formats
    }

    /// Where the format plugin called `name` comes from.
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.origins
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, origin)| origin)
    }

    /// The format plugins that can write images.
    pub fn writers(&self) -> impl Iterator<Item = &Arc<dyn DiskFormat>> {
        self.formats
            .formats()
            .iter()
            .filter(|f| f.writer().is_some())
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn StorageBackend>> {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .cloned()
            .ok_or_else(|| Error::UnknownBackend {
                name: name.to_string(),
                known: self
                    .backends
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Rows for `plugins list`: formats (capabilities `read`, `probe` and what the plugin
    /// declares), then backends (their settings).
    pub fn rows(&self) -> Vec<PluginRow> {
        let mut rows: Vec<PluginRow> = self
            .formats
            .formats()
            .iter()
            .map(|f| {
                let declared = f.capabilities().to_string();
                PluginRow {
                    kind: "format",
                    name: f.name().to_string(),
                    version: f.version().to_string(),
                    api_version: f.api_version(),
                    origin: self
                        .origin(f.name())
                        .map(Origin::to_string)
                        .unwrap_or_default(),
                    capabilities: ["read", "probe"]
                        .into_iter()
                        .chain(declared.split(", "))
                        .map(str::to_string)
                        .collect(),
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
