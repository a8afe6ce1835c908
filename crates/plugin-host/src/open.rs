//! Opening an image: the format by name or probe, backing files only when allowed and only
//! inside the allowed directories, and every opened disk behind the [`Checked`] filter.

use crate::Checked;
use aero_plugin_api::{
    Backing, BackingResolver, ByteSource, DiskFormat, Error, ErrorKind, FileSource, OpenContext,
    Registry, Result, VirtualDisk,
};
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

/// An opened image.
pub struct OpenedDisk {
    /// The guest-visible disk, behind the checking filter.
    pub disk: Arc<dyn VirtualDisk>,
    /// The plugin that opened it.
    pub format: Arc<dyn DiskFormat>,
}

/// Opens the image at `path` with the format of `formats` named `format` (`None` or `"auto"`
/// = detect).
pub fn open_path(
    formats: &Registry,
    path: &Path,
    format: Option<&str>,
    options: &OpenOptions,
) -> Result<OpenedDisk> {
    let source: Arc<dyn ByteSource> = Arc::new(FileSource::open(path)?);
    open_source(formats, source, format, options)
}

/// Opens `source` with the format of `formats` named `format` (`None` or `"auto"` = detect).
pub fn open_source(
    formats: &Registry,
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
        registry: formats,
        allow: options.allow_backing,
        roots: &roots,
    };
    chain.open(source, format, 0)
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
            .open(Arc::clone(&source), &OpenContext::new(&resolver))
            .map_err(|e| {
                if e.message().starts_with(source.name()) {
                    e
                } else {
                    e.context(format!("opening {} as {}", source.name(), plugin.name()))
                }
            })?;
        Ok(OpenedDisk {
            disk: Checked::wrap(disk, plugin.name()),
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
        Ok(Backing::new(opened.disk, resolved.display().to_string()))
    }
}
