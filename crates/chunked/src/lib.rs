//! The Aero chunked disk image format as a library: the documents and every rule of the
//! specification ([`format`]), where objects live ([`layout`]), objects with their HTTP
//! metadata in a storage ([`store`]), where objects are read from ([`source`]), finding a
//! checked manifest ([`resolve`]), reading byte ranges of an image ([`read`]), and the
//! [`publish`] and [`verify`] jobs, plus the sparse raw file writer ([`sink`]).
//!
//! The crate never reads the process environment and never prints; progress is reported
//! through the [`progress::Progress`] trait.

mod error;
pub mod format;
pub mod layout;
pub mod progress;
pub mod publish;
pub mod read;
pub mod resolve;
pub mod sink;
pub mod source;
pub mod store;
pub mod verify;

pub use error::{Context, Error, Result};
