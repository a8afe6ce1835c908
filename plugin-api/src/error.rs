//! The one error type that crosses the plugin boundary.

use std::fmt;

/// Result of plugin operations.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong, coarsely; the message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading the underlying bytes failed.
    Io,
    /// The image is structurally invalid (truncated, bad offsets, bad checksums, ...).
    Corrupt,
    /// The image uses a feature this plugin does not support (named in the message).
    Unsupported,
    /// The image has a backing file or parent and following it was not allowed.
    BackingNotAllowed,
    /// A read or query outside the disk's capacity.
    OutOfBounds,
    /// The caller asked for something invalid (unknown format name, bad option).
    InvalidInput,
}

/// An error with a kind and a message that names the file and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A structural problem in an image.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// A feature the plugin does not support.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// An I/O failure.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }

    /// Invalid input from the caller.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// A range outside `[0, capacity)`.
    pub fn out_of_bounds(offset: u64, len: u64, capacity: u64) -> Self {
        Self::new(
            ErrorKind::OutOfBounds,
            format!("read of {len} bytes at offset {offset} lies outside the disk (capacity {capacity} bytes)"),
        )
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` prepended (`"opening x.qcow2: ..."`).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io(e.to_string())
    }
}
