//! The catalogue of format plugins: lookup by name, detection by probe, and opening images
//! with their backing chains.

use crate::format::{Backing, BackingResolver, DiskFormat, OpenContext, ProbeInput, ProbeResult};
use crate::{ByteSource, Error, ErrorKind, FileSource, FormatRegistration, Result, VirtualDisk};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deep a backing chain may go.
pub const MAX_BACKING_DEPTH: usize = 16;

/// Options for opening an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Follow backing files and parent disks.
    pub allow_backing: bool,
    /// Directories backing files may live in, besides the directory of the image itself.
    pub backing_roots: Vec<PathBuf>,
}

/// An image opened by the registry.
pub struct OpenedDisk {
    /// The guest-visible disk.
    pub disk: Arc<dyn VirtualDisk>,
    /// The plugin that opened it.
    pub format: Arc<dyn DiskFormat>,
}

/// The format plugins the host knows, in a fixed order.
#[derive(Clone, Default)]
pub struct Registry {
    formats: Vec<Arc<dyn DiskFormat>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every built-in plugin registered with [`register_format!`](crate::register_format),
    /// sorted by name.
    pub fn builtin() -> Result<Self> {
        let mut registry = Self::new();
        let mut formats: Vec<_> = inventory::iter::<FormatRegistration>
            .into_iter()
            .map(|r| (r.create)())
            .collect();
        formats.sort_by(|a, b| a.name().cmp(b.name()));
        for format in formats {
            registry.add(format)?;
        }
        Ok(registry)
    }

    /// Adds a plugin; a name or alias that is already taken is an error.
    pub fn add(&mut self, format: Arc<dyn DiskFormat>) -> Result<()> {
        for name in std::iter::once(format.name()).chain(format.aliases().iter().copied()) {
            if let Some(existing) = self.get(name) {
                return Err(Error::invalid_input(format!(
                    "format plugin name '{name}' is registered twice (plugin '{}' version {} and plugin '{}' version {})",
                    existing.name(),
                    existing.version(),
                    format.name(),
                    format.version()
                )));
            }
        }
        self.formats.push(format);
        Ok(())
    }

    /// Replaces the plugin called `format.name()` (or adds it).
    pub fn replace(&mut self, format: Arc<dyn DiskFormat>) {
        self.formats.retain(|f| f.name() != format.name());
        self.formats.push(format);
    }

    /// All plugins.
    pub fn formats(&self) -> &[Arc<dyn DiskFormat>] {
        &self.formats
    }

    /// The plugin with this name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Arc<dyn DiskFormat>> {
        self.formats
            .iter()
            .find(|f| {
                f.name().eq_ignore_ascii_case(name)
                    || f.aliases().iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .cloned()
    }

    /// The plugin with this name, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<Arc<dyn DiskFormat>> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.formats.iter().map(|f| f.name()).collect();
            Error::invalid_input(format!(
                "unknown format '{name}' (known formats: auto, {})",
                known.join(", ")
            ))
        })
    }

    /// Picks the plugin for `source` by probing: the first plugin that matches, else the
    /// fallback (raw).
    pub fn detect(&self, source: &dyn ByteSource) -> Result<Arc<dyn DiskFormat>> {
        ProbeInput::read(source, |input| {
            let verdicts: Vec<_> = self.formats.iter().map(|f| (f, f.probe(&input))).collect();
            verdicts
                .iter()
                .find(|(_, v)| *v == ProbeResult::Match)
                .or_else(|| verdicts.iter().find(|(_, v)| *v == ProbeResult::Fallback))
                .map(|(f, _)| Arc::clone(f))
        })
        .map_err(|e| e.context(format!("probing {}", source.name())))?
        .ok_or_else(|| {
            Error::unsupported(format!(
                "{}: no format plugin recognises this file",
                source.name()
            ))
        })
    }

    /// Opens the image at `path` with the named format (`None` or `"auto"` = detect).
    pub fn open_path(
        &self,
        path: &Path,
        format: Option<&str>,
        options: &OpenOptions,
    ) -> Result<OpenedDisk> {
        let source: Arc<dyn ByteSource> = Arc::new(FileSource::open(path)?);
        self.open_source(source, format, options)
    }

    /// Opens `source` with the named format (`None` or `"auto"` = detect).
    pub fn open_source(
        &self,
        source: Arc<dyn ByteSource>,
        format: Option<&str>,
        options: &OpenOptions,
    ) -> Result<OpenedDisk> {
        let mut roots = Vec::new();
        if let Some(dir) = source.local_path().and_then(Path::parent) {
            roots.push(canonical(dir)?);
        }
        for root in &options.backing_roots {
            roots.push(canonical(root)?);
        }
        let chain = Chain {
            registry: self,
            allow: options.allow_backing,
            roots: &roots,
        };
        chain.open(source, format, 0)
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    path.canonicalize()
        .map_err(|e| Error::io(format!("resolving {}: {e}", path.display())))
}

/// Opens images and, when allowed, their backing files within the allowed roots.
struct Chain<'a> {
    registry: &'a Registry,
    allow: bool,
    roots: &'a [PathBuf],
}

impl Chain<'_> {
    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        format: Option<&str>,
        depth: usize,
    ) -> Result<OpenedDisk> {
        let plugin = match format {
            None | Some("auto") => self.registry.detect(source.as_ref())?,
            Some(name) => self.registry.require(name)?,
        };
        let resolver = Resolver {
            chain: self,
            image: source.name().to_string(),
            dir: source
                .local_path()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
            depth,
        };
        let disk = plugin
            .open(Arc::clone(&source), &OpenContext { backing: &resolver })
            .map_err(|e| {
                if e.message().starts_with(source.name()) {
                    e
                } else {
                    e.context(format!("opening {} as {}", source.name(), plugin.name()))
                }
            })?;
        Ok(OpenedDisk {
            disk,
            format: plugin,
        })
    }
}

struct Resolver<'a> {
    chain: &'a Chain<'a>,
    image: String,
    dir: Option<PathBuf>,
    depth: usize,
}

impl BackingResolver for Resolver<'_> {
    fn open_backing(&self, reference: &str, format: Option<&str>) -> Result<Backing> {
        if !self.chain.allow {
            return Err(Error::new(
                ErrorKind::BackingNotAllowed,
                format!(
                    "{} has a backing file '{reference}'; backing files are not followed unless allowed: \
                     pass --allow-backing (or set allow_backing = true in the config)",
                    self.image
                ),
            ));
        }
        if self.depth + 1 >= MAX_BACKING_DEPTH {
            return Err(Error::unsupported(format!(
                "{}: backing chain deeper than {MAX_BACKING_DEPTH} images (at '{reference}')",
                self.image
            )));
        }
        let reference_path = Path::new(reference);
        let path = if reference_path.is_absolute() {
            reference_path.to_path_buf()
        } else {
            let dir = self.dir.as_ref().ok_or_else(|| {
                Error::unsupported(format!(
                    "{}: backing file '{reference}' is relative but the image is not a local file",
                    self.image
                ))
            })?;
            dir.join(reference_path)
        };
        let resolved = path.canonicalize().map_err(|e| {
            Error::io(format!(
                "{}: backing file '{reference}' (resolved to {}): {e}",
                self.image,
                path.display()
            ))
        })?;
        if !self
            .chain
            .roots
            .iter()
            .any(|root| resolved.starts_with(root))
        {
            return Err(Error::new(
                ErrorKind::BackingNotAllowed,
                format!(
                    "{}: backing file '{reference}' resolves to {}, outside the allowed directories ({}); \
                     add its directory to backing_roots in the config",
                    self.image,
                    resolved.display(),
                    self.chain
                        .roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let source: Arc<dyn ByteSource> = Arc::new(FileSource::open(&resolved)?);
        let opened = self.chain.open(source, format, self.depth + 1)?;
        Ok(Backing {
            disk: opened.disk,
            path: resolved.display().to_string(),
        })
    }
}
