//! Opening images as a host with default options would, for plugin tests: the format picked by
//! name or probe, backing files followed only when allowed and only inside the image's
//! directory, opened with the same formats.

use aero_plugin_api::{
    Backing, BackingResolver, ByteSource, DiskFormat, Error, ErrorKind, FileSource, OpenContext,
    Registry, Result, VirtualDisk,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deep a backing chain may go.
const MAX_DEPTH: usize = 16;

/// An opened image and the plugin that opened it.
pub struct Opened {
    /// The guest-visible disk.
    pub disk: Arc<dyn VirtualDisk>,
    /// The plugin that opened it.
    pub format: Arc<dyn DiskFormat>,
}

/// Opens the image at `path` with the named format (`None` = detect); backing files are
/// followed when `allow_backing` is set.
pub fn open_path(
    formats: &Registry,
    path: &Path,
    format: Option<&str>,
    allow_backing: bool,
) -> Result<Opened> {
    open_source(
        formats,
        Arc::new(FileSource::open(path)?),
        format,
        allow_backing,
    )
}

/// Opens `source` with the named format (`None` = detect); backing files are followed when
/// `allow_backing` is set and `source` is a local file.
pub fn open_source(
    formats: &Registry,
    source: Arc<dyn ByteSource>,
    format: Option<&str>,
    allow_backing: bool,
) -> Result<Opened> {
    let root = source
        .local_path()
        .and_then(Path::parent)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }
        })
        .map(Path::canonicalize)
        .transpose()?;
    let chain = Chain {
        formats,
        allow: allow_backing,
        root,
    };
    chain.open(source, format, 0)
}

struct Chain<'a> {
    formats: &'a Registry,
    allow: bool,
    root: Option<PathBuf>,
}

impl Chain<'_> {
    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        format: Option<&str>,
        depth: usize,
    ) -> Result<Opened> {
        let plugin = match format {
            None => self.formats.detect(source.as_ref())?,
            Some(name) => self.formats.require(name)?,
        };
        let resolver = Resolver {
            chain: self,
            image: source.name().to_string(),
            depth,
        };
        let disk = plugin.open(source, &OpenContext::new(&resolver))?;
        Ok(Opened {
            disk,
            format: plugin,
        })
    }
}

struct Resolver<'a> {
    chain: &'a Chain<'a>,
    image: String,
    depth: usize,
}

impl BackingResolver for Resolver<'_> {
    fn open_backing(&self, reference: &str, format: Option<&str>) -> Result<Backing> {
        let refuse = |why: String| {
            Error::new(
                ErrorKind::BackingNotAllowed,
                format!("{} has a backing file '{reference}': {why}", self.image),
            )
        };
        if !self.chain.allow {
            return Err(refuse("backing files are not allowed".into()));
        }
        if self.depth + 1 >= MAX_DEPTH {
            return Err(Error::unsupported(format!(
                "{}: backing chain deeper than {MAX_DEPTH} images",
                self.image
            )));
        }
        let root = self
            .chain
            .root
            .as_ref()
            .ok_or_else(|| refuse("the image is not a local file".into()))?;
        let resolved = root
            .join(reference)
            .canonicalize()
            .map_err(|e| Error::io(format!("{}: backing file '{reference}': {e}", self.image)))?;
        if !resolved.starts_with(root) {
            return Err(refuse(format!(
                "{} is outside {}",
                resolved.display(),
                root.display()
            )));
        }
        let source = Arc::new(FileSource::open(&resolved)?);
        let opened = self.chain.open(source, format, self.depth + 1)?;
        Ok(Backing::new(opened.disk, resolved.display().to_string()))
    }
}
