//! The stable plugin API of aero-host.
//!
//! A disk-format plugin implements [`DiskFormat`]: it describes itself, probes the first
//! bytes of a file ([`ProbeInput`]) and opens a [`ByteSource`] into a [`VirtualDisk`], the
//! guest-visible bytes of the image plus which extents are known zeros.
//! Built-in plugins register with [`register_format!`]; [`Registry`] finds them by name or
//! probe. A plugin says what else it can do with [`DiskFormat::capabilities`] (and writes
//! images through [`DiskFormat::writer`]); [`ExtentCollector`] builds `block_status` answers.
//! This crate is the contract only: the host's side lives in `aero-plugin-host`, the
//! conformance suite in `aero-plugin-testkit`.

pub mod abi;
mod capabilities;
mod error;
mod extents;
mod format;
mod registry;
mod source;

#[cfg(feature = "backend")]
pub mod backend;

pub use capabilities::Capabilities;
pub use error::{Error, ErrorKind, Result};
pub use extents::ExtentCollector;
pub use format::{
    Backing, BackingResolver, DiskFormat, DiskInfo, DiskWriter, Extent, ExtentKind,
    FormatRegistration, OpenContext, ProbeInput, ProbeResult, VirtualDisk, WriteSummary,
    PLUGIN_API_VERSION,
};
pub use registry::Registry;
pub use source::{ByteSource, FileSource, MemorySource};

#[doc(hidden)]
pub use inventory;
