//! The image catalog: a registry file in TOML listing images, and the includes that pull in
//! other registries.
//!
//! ```toml
//! [[images]]
//! name = "debian"
//! version = "12.5"
//! released_at = "2024-02-10"
//! description = "Debian 12 cloud image"
//! arch = "x86_64"
//! manifest = "https://cdn.example.com/images/debian/sha256-…/manifest.json"
//! sha256 = "…"            # with `manifest`: the digest of the whole guest disk
//!
//! [[images]]
//! name = "alpine"
//! version = "3.19"
//! arch = "x86_64"
//! url = "https://example.com/alpine.qcow2"
//! sha256 = "…"            # with `url`: the digest of the downloaded file
//! format = "qcow2"         # raw (default), qcow2 or vhd; converted to raw on pull
//!
//! [[images]]
//! name = "rootfs"
//! version = "1"
//! url = "https://example.com/rootfs.tar.gz"   # an archive: extracted into a directory
//! sha256sums = "SHA256SUMS"  # instead of sha256: a checksum list, relative to url
//!
//! [[includes]]
//! url = "https://example.com/more.toml"   # or a path, relative to this file
//! ```
//!
//! Includes are read breadth-first, each once; when two registries list the same
//! name and version the first wins (with a warning). The latest version of a name is the one
//! with the highest `released_at`. The library never prints: warnings are returned.

mod checksums;
mod load;
mod registry;

pub use checksums::{find_sha256, sha256_from_list};
pub use load::{load, sync, SyncOutcome, MAX_REGISTRY_BYTES};
pub use registry::{Checksum, Image, ImageKind, Include, Registry, RegistryFile, ARCHIVE_FORMAT};

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, naming the registry or image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A registry could not be read.
    #[error("reading the registry {location}: {problem}")]
    Fetch {
        /// Its URL or path.
        location: String,
        /// What went wrong.
        problem: String,
    },
    /// A registry does not parse or breaks a rule.
    #[error("the registry {location} is invalid: {problem}")]
    Invalid {
        /// Its URL or path.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// No image matches.
    #[error("{0}")]
    NotFound(String),
    /// Writing the local copy failed.
    #[error("{context}: {source}")]
    Io {
        /// The operation and the path.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}
