//! Pulling a published chunked image into a local sparse raw file.
//!
//! [`pull`] takes a manifest already found and checked by `aero_chunked::resolve` and writes
//! the guest disk to `OUT`:
//! - chunks marked zero, or whose digest is the zero digest of their size, are never fetched
//!   and stay holes; fetched all-zero chunks are not written either;
//! - other chunks come from the shared [`ChunkCache`](aero_chunk_cache::ChunkCache) when it
//!   holds them, else from the image's source, `concurrency` at once, each checked against
//!   the manifest's size and sha256 before it is written, retried with backoff when wrong;
//! - writing goes to `OUT.part`, with `OUT.part.state` recording which chunks are written
//!   ([`state`]): a killed pull resumes where it stopped; the finished file is flushed and
//!   renamed to `OUT`, and a complete `OUT` of the same manifest is left as it is;
//! - a version `sha256-<hex>` is checked against the whole disk, hashed in order while the
//!   chunks arrive (zero chunks from a buffer of zeros, never read back).
//!
//! [`download`] fetches one plain file (a catalog's disk file or archive), resumable and
//! checked against its sha256.
//!
//! The crate never reads the environment and never prints: progress goes through
//! [`PullProgress`].

mod digest;
mod download;
mod engine;
mod error;
mod fetch;
mod plan;
pub mod state;

pub use download::{download, Downloaded};
pub use engine::{pull, PullOptions, PullProgress, PullSummary};
pub use error::{Error, Result};
pub use plan::ChunkFate;
