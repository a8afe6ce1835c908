//! The disk-format plugin traits.

use crate::{ByteSource, Result};
use std::sync::Arc;

/// The plugin-API version this crate defines. A plugin reports the version it was built for.
pub const PLUGIN_API_VERSION: u32 = 1;

/// Whether an extent holds data or is known to read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentKind {
    /// Bytes that must be read (they may still happen to be zero).
    Data,
    /// Bytes known to read as zeros without reading them.
    Zero,
}

/// A run of guest-visible bytes `[offset, offset + length)` of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First byte of the run.
    pub offset: u64,
    /// Length of the run in bytes (never 0).
    pub length: u64,
    /// Data or zeros.
    pub kind: ExtentKind,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// Facts about an open disk, for `inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Cluster, block or grain size in bytes, when the format has one.
    pub cluster_size: Option<u64>,
    /// The backing files or parents that were opened, nearest first.
    pub backing_chain: Vec<String>,
}

/// A guest-visible virtual disk: read-only, thread-safe, random access.
pub trait VirtualDisk: Send + Sync {
    /// Size of the guest-visible disk in bytes.
    fn capacity(&self) -> u64;

    /// Fills `buf` with the guest-visible bytes at `offset`. Reads that extend past
    /// [`capacity`](Self::capacity) are errors. A zero-length read inside the disk succeeds.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Block status of `[offset, offset + length)`: extents in ascending order that cover the
    /// range exactly, without gaps or overlaps. Zero extents are guaranteed to read as zeros;
    /// data extents may contain zeros too. The range must lie within the disk.
    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>>;

    /// Cluster size and backing chain.
    fn info(&self) -> DiskInfo;
}

/// What a probe sees: the start and end of a file and its length.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInput<'a> {
    /// The first bytes of the file (up to 4096; fewer if the file is shorter).
    pub head: &'a [u8],
    /// The last bytes of the file (up to 512; fewer if the file is shorter).
    pub tail: &'a [u8],
    /// The file's length.
    pub len: u64,
}

impl ProbeInput<'_> {
    /// How many head bytes a probe receives at most.
    pub const HEAD_LEN: usize = 4096;
    /// How many tail bytes a probe receives at most.
    pub const TAIL_LEN: usize = 512;

    /// Reads the head and tail of `source` and calls `f` with them.
    pub fn read<T>(source: &dyn ByteSource, f: impl FnOnce(ProbeInput<'_>) -> T) -> Result<T> {
        let len = source.len();
        let mut head = vec![0u8; len.min(Self::HEAD_LEN as u64) as usize];
        source.read_at(0, &mut head)?;
        let tail_len = len.min(Self::TAIL_LEN as u64);
        let mut tail = vec![0u8; tail_len as usize];
        source.read_at(len - tail_len, &mut tail)?;
        Ok(f(ProbeInput {
            head: &head,
            tail: &tail,
            len,
        }))
    }
}

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Definitely not this format.
    NoMatch,
    /// This format.
    Match,
    /// Any file can be read this way, but only when nothing else matches (raw).
    Fallback,
}

/// Resolves backing files and parent disks for a plugin that is opening an image.
///
/// The host implements it: it decides whether backing files are allowed at all, confines them
/// to the allowed directories, limits the depth and picks the parent's format.
pub trait BackingResolver: Send + Sync {
    /// Opens the backing file `reference` (as written in the image) of the image being opened,
    /// with `format` when the image names the backing format.
    fn open_backing(&self, reference: &str, format: Option<&str>) -> Result<Backing>;
}

/// An opened backing file or parent disk.
pub struct Backing {
    /// The guest-visible bytes of the backing file.
    pub disk: Arc<dyn VirtualDisk>,
    /// Where it was found (for messages and [`DiskInfo::backing_chain`]).
    pub path: String,
}

impl Backing {
    /// The backing chain of an image whose backing file is `self`: this path, then its own chain.
    pub fn chain(&self) -> Vec<String> {
        let mut chain = vec![self.path.clone()];
        chain.extend(self.disk.info().backing_chain);
        chain
    }
}

/// Everything a plugin gets when it opens an image besides the bytes.
pub struct OpenContext<'a> {
    /// Opens backing files; it refuses them with a clear message when they are not allowed.
    pub backing: &'a dyn BackingResolver,
}

/// A disk-format plugin.
pub trait DiskFormat: Send + Sync {
    /// Short lowercase name (`qcow2`), used by `--format`.
    fn name(&self) -> &str;

    /// Other accepted names for `--format` (`aerospar`).
    fn aliases(&self) -> &[&str] {
        &[]
    }

    /// The plugin's own version.
    fn version(&self) -> &str;

    /// The plugin-API version the plugin was built for.
    fn api_version(&self) -> u32 {
        PLUGIN_API_VERSION
    }

    /// Says whether a file with this head, tail and length is in this format. Never follows
    /// references and never fails.
    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult;

    /// Opens `source` as a virtual disk.
    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>>;
}

/// A built-in plugin's entry in the `inventory` collection.
pub struct FormatRegistration {
    /// Constructs the plugin.
    pub create: fn() -> Arc<dyn DiskFormat>,
}

inventory::collect!(FormatRegistration);

/// Registers a built-in format plugin: `register_format!(Qcow2Format)` where the type
/// implements [`DiskFormat`] and `Default`.
#[macro_export]
macro_rules! register_format {
    ($ty:ty) => {
        $crate::inventory::submit! {
            $crate::FormatRegistration {
                create: || ::std::sync::Arc::new(<$ty as ::std::default::Default>::default()),
            }
        }
    };
}
