//! A read-only NBD server ([`server`]) of one [`export::Export`]: a published image whose
//! chunks are fetched on demand and verified before use ([`chunked`]), or a local image in
//! any format the plugins read ([`disk`]). The protocol's numbers are in [`protocol`], the
//! counters in [`metrics`].
//!
//! The crate never reads the process environment and never prints.

pub mod chunked;
pub mod disk;
pub mod export;
pub mod metrics;
pub mod protocol;
pub mod server;

pub use chunked::{ChunkedExport, ChunkedSettings};
pub use disk::DiskExport;
pub use export::{Export, ExportError};
pub use metrics::{Metrics, MetricsSnapshot};
pub use server::{Listener, Server, Settings};
