//! The one error type of the crate: a small matchable kind with the context of what was being
//! done and on what, and the underlying error as its source.

use aero_plugin_api::backend::opendal;

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. `Display` says what was being done; `{:#}` in `anyhow` (or walking
/// [`std::error::Error::source`]) adds the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the format or an option is broken.
    #[error("{0}")]
    Invalid(String),
    /// A JSON document does not parse.
    #[error("{what}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A storage operation failed.
    #[error("{context}")]
    Storage {
        /// The operation and the object.
        context: String,
        /// The backend's error.
        #[source]
        source: opendal::Error,
    },
    /// A local file operation failed.
    #[error("{context}")]
    Io {
        /// The operation and the path.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed.
    #[error("{0}")]
    Http(String),
    /// A disk (format plugin) read failed.
    #[error("{0}")]
    Disk(aero_plugin_api::Error),
    /// Another error, with what was being done around it.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// A broken rule or option, as a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// A failed storage operation.
    pub fn storage(context: impl Into<String>, source: opendal::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }

    /// A failed file operation.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The error and its causes, `: `-separated (as `anyhow` prints `{:#}`).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// Whether the error means "no such object or file" (at any depth).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Storage { source, .. } => crate::store::is_not_found(source),
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Context { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// Whether the storage (or file system) failed, as opposed to the content breaking a rule.
    pub fn is_storage(&self) -> bool {
        match self {
            Error::Storage { .. } | Error::Io { .. } => true,
            Error::Context { source, .. } => source.is_storage(),
            _ => false,
        }
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with a lazily built context.
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

impl From<aero_plugin_api::Error> for Error {
    fn from(e: aero_plugin_api::Error) -> Self {
        Error::Disk(e)
    }
}

/// Returns early with an [`Error::Invalid`] built like `format!`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
