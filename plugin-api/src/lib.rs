//! The stable plugin API of aero-host.
//!
//! A disk-format plugin implements [`DiskFormat`]: it describes itself, probes the first
//! bytes of a file ([`ProbeInput`]) and opens a [`ByteSource`] into a [`VirtualDisk`], the
//! guest-visible bytes of the image plus which extents are known zeros.
//! Built-in plugins register with [`register_format!`]; the host finds them through
//! [`Registry`].

pub mod abi;
mod error;
mod format;
mod registry;
mod source;

#[cfg(feature = "backend")]
pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{Error, ErrorKind, Result};
pub use format::{
    Backing, BackingResolver, DiskFormat, DiskInfo, Extent, ExtentKind, FormatRegistration,
    OpenContext, ProbeInput, ProbeResult, VirtualDisk, PLUGIN_API_VERSION,
};
pub use registry::{OpenOptions, OpenedDisk, Registry, MAX_BACKING_DEPTH};
pub use source::{ByteSource, FileSource, MemorySource};

#[doc(hidden)]
pub use inventory;
