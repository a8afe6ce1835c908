//! The crate's error: what was being done and on what.

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Resolving or reading the published image failed.
    #[error(transparent)]
    Chunked(#[from] aero_chunked::Error),
    /// One chunk could not be fetched right.
    #[error("chunk {index} ({location}): {problem}")]
    Chunk {
        /// The chunk's index.
        index: u64,
        /// Its URL, key or path.
        location: String,
        /// What was wrong.
        problem: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// The operation and the path.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The pull cannot be done as asked.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
