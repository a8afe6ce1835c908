//! The disk-format plugin traits.

use crate::{ByteSource, Capabilities, Result};
use std::path::Path;
use std::sync::Arc;

/// The plugin-API version this crate defines. A plugin reports the version it was built for.
/// It changes with [`abi::ABI_VERSION`](crate::abi::ABI_VERSION), when built plugins can no
/// longer follow the contract; additions (capabilities, writers, the extent collector) keep it.
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
#[non_exhaustive]
pub struct Extent {
    /// First byte of the run.
    pub offset: u64,
    /// Length of the run in bytes (never 0).
    pub length: u64,
    /// Data or zeros.
    pub kind: ExtentKind,
}

impl Extent {
    /// The run `[offset, offset + length)` of `kind`.
    pub fn new(offset: u64, length: u64, kind: ExtentKind) -> Self {
        Extent {
            offset,
            length,
            kind,
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// Facts about an open disk, for `inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskInfo {
    /// Cluster, block or grain size in bytes, when the format has one.
    pub cluster_size: Option<u64>,
    /// The backing files or parents that were opened, nearest first.
    pub backing_chain: Vec<String>,
}

impl DiskInfo {
    /// Facts with the given cluster size and no backing chain.
    pub fn new(cluster_size: Option<u64>) -> Self {
        DiskInfo {
            cluster_size,
            backing_chain: Vec::new(),
        }
    }

    /// The same facts with `chain` as the backing chain.
    pub fn with_backing_chain(mut self, chain: Vec<String>) -> Self {
        self.backing_chain = chain;
        self
    }
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
#[non_exhaustive]
pub struct ProbeInput<'a> {
    /// The first bytes of the file (up to 4096; fewer if the file is shorter).
    pub head: &'a [u8],
    /// The last bytes of the file (up to 512; fewer if the file is shorter).
    pub tail: &'a [u8],
    /// The file's length.
    pub len: u64,
}

impl<'a> ProbeInput<'a> {
    /// How many head bytes a probe receives at most.
    pub const HEAD_LEN: usize = 4096;
    /// How many tail bytes a probe receives at most.
    pub const TAIL_LEN: usize = 512;

    /// The input for a file of `len` bytes starting with `head` and ending with `tail`.
    pub fn new(head: &'a [u8], tail: &'a [u8], len: u64) -> Self {
        ProbeInput { head, tail, len }
    }

    /// Reads the head and tail of `source` and calls `f` with them.
    pub fn read<T>(source: &dyn ByteSource, f: impl FnOnce(ProbeInput<'_>) -> T) -> Result<T> {
        let len = source.len();
        let mut head = vec![0u8; len.min(Self::HEAD_LEN as u64) as usize];
        source.read_at(0, &mut head)?;
        let tail_len = len.min(Self::TAIL_LEN as u64);
        let mut tail = vec![0u8; tail_len as usize];
        source.read_at(len - tail_len, &mut tail)?;
        Ok(f(ProbeInput::new(&head, &tail, len)))
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
#[non_exhaustive]
pub struct Backing {
    /// The guest-visible bytes of the backing file.
    pub disk: Arc<dyn VirtualDisk>,
    /// Where it was found (for messages and [`DiskInfo::backing_chain`]).
    pub path: String,
}

impl Backing {
    /// The backing disk `disk`, found at `path`.
    pub fn new(disk: Arc<dyn VirtualDisk>, path: String) -> Self {
        Backing { disk, path }
    }

    /// The backing chain of an image whose backing file is `self`: this path, then its own chain.
    pub fn chain(&self) -> Vec<String> {
        let mut chain = vec![self.path.clone()];
        chain.extend(self.disk.info().backing_chain);
        chain
    }
}

/// Everything a plugin gets when it opens an image besides the bytes.
#[non_exhaustive]
pub struct OpenContext<'a> {
    /// Opens backing files; it refuses them with a clear message when they are not allowed.
    pub backing: &'a dyn BackingResolver,
}

impl<'a> OpenContext<'a> {
    /// A context whose backing files are opened by `backing`.
    pub fn new(backing: &'a dyn BackingResolver) -> Self {
        OpenContext { backing }
    }
}

/// What a summary of a written image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteSummary {
    /// Guest-visible bytes of the written image.
    pub virtual_size: u64,
    /// Bytes of data the image stores (blocks or clusters allocated, times their size).
    pub data_bytes: u64,
}

impl WriteSummary {
    /// A summary of an image of `virtual_size` guest bytes storing `data_bytes` of data.
    pub fn new(virtual_size: u64, data_bytes: u64) -> Self {
        WriteSummary {
            virtual_size,
            data_bytes,
        }
    }
}

/// The optional writer of a format: it writes any virtual disk as an image of the format.
pub trait DiskWriter: Send + Sync {
    /// Writes the guest-visible bytes of `disk` to a new image at `out`. A failure never
    /// leaves a file at `out` that looks complete.
    fn write(&self, disk: &dyn VirtualDisk, out: &Path) -> Result<WriteSummary>;
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

    /// What the plugin can do besides reading and probing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// The plugin's writer, when it can write images (then [`capabilities`](Self::capabilities)
    /// includes [`Capabilities::WRITE`]).
    fn writer(&self) -> Option<&dyn DiskWriter> {
        None
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
