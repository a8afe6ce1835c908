//! The host's side of aero-host plugins.
//!
//! [`PluginSet`] is every plugin the host can use: the built-ins linked into the binary
//! (registered with `aero_plugin_api::register_format!`), plus format plugins loaded from
//! shared libraries by [`library`], each with its origin and its declared capabilities.
//! [`open_path`]/[`open_source`] open an image with the backing-file policy, and every disk
//! they open sits behind the one [`Checked`] filter. [`storage`] opens a storage through the
//! backend plugins with the retry, timeout and logging layers.

mod checked;
mod error;
pub mod library;
mod open;
mod set;
pub mod storage;

pub use checked::Checked;
pub use error::{Error, Result};
pub use open::{open_path, open_source, OpenOptions, OpenedDisk, MAX_BACKING_DEPTH};
pub use set::{LibrarySelection, Origin, PluginRow, PluginSet};
