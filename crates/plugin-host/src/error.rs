//! The errors of the host's side of plugins.

use std::path::PathBuf;

/// What went wrong while assembling the plugin set or opening a storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plugin or backend reported an error (its message names what and where).
    #[error(transparent)]
    Plugin(#[from] aero_plugin_api::Error),
    /// The plugin directory could not be read.
    #[error("reading plugin directory {}: {cause}", dir.display())]
    PluginDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A library provides a format whose name is already taken.
    #[error(
        "plugin {} provides format '{name}', which {origin} already provides; \
         remove one, or add \"{name}\" to prefer_library in [plugins] to let the library win",
        library.display()
    )]
    NameTaken {
        /// The library.
        library: PathBuf,
        /// The format name.
        name: String,
        /// Where the plugin that has the name comes from.
        origin: String,
    },
    /// A library's plugin could not join the set (an alias is taken).
    #[error("{} ({cause})", library.display())]
    Rejected {
        /// The library.
        library: PathBuf,
        /// Why.
        cause: aero_plugin_api::Error,
    },
    /// No backend has this name.
    #[error("unknown storage type '{name}' (known: {known})")]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A storage URI that cannot be understood; the message says why.
    #[error("{0}")]
    StorageUri(String),
}

/// Result of the host's plugin operations.
pub type Result<T> = std::result::Result<T, Error>;
