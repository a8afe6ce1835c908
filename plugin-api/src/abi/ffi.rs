//! The `#[repr(C)]` types of ABI v1 and the error channel both sides share.

use crate::{Capabilities, Error, ErrorKind};
use std::ffi::{c_char, c_void};

/// The ABI version this crate speaks. Bumped only for incompatible changes.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin library exports: `extern "C" fn() -> *const FormatPluginV1`.
/// Its name never changes; the descriptor's header says which ABI version it follows.
pub const ENTRY_SYMBOL: &str = "aero_format_plugin";

/// A call succeeded.
pub const STATUS_OK: i32 = 0;
/// A call failed; the error was written to the caller's [`ErrorSink`].
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the panic message was written to the caller's [`ErrorSink`].
pub const STATUS_PANIC: i32 = 2;

/// [`FormatPluginV1::probe`] verdicts.
pub const PROBE_NO_MATCH: u32 = 0;
/// See [`PROBE_NO_MATCH`].
pub const PROBE_MATCH: u32 = 1;
/// See [`PROBE_NO_MATCH`].
pub const PROBE_FALLBACK: u32 = 2;

/// [`RawExtent::kind`] of data.
pub const EXTENT_DATA: u32 = 0;
/// [`RawExtent::kind`] of known zeros.
pub const EXTENT_ZERO: u32 = 1;

/// The first bytes of every descriptor, in every ABI version.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiHeader {
    /// Size in bytes of the whole descriptor as the plugin built it.
    pub struct_size: u32,
    /// The ABI version the plugin was built for.
    pub abi_version: u32,
}

/// Where a callee writes an error: it calls `set` once, then returns [`STATUS_ERROR`] or
/// [`STATUS_PANIC`]. The message is UTF-8 and copied before `set` returns.
#[repr(C)]
pub struct ErrorSink {
    /// The caller's slot.
    pub ctx: *mut c_void,
    /// Records `kind` (see [`kind_code`]) and the message `[message, message + len)`.
    pub set: unsafe extern "C" fn(ctx: *mut c_void, kind: u32, message: *const u8, len: usize),
}

/// The host's byte source, handed to `open`. The plugin owns it from then on and calls
/// `release` exactly once when it no longer needs it, even when `open` fails.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HostSource {
    /// The host's source object.
    pub ctx: *const c_void,
    /// Length in bytes.
    pub len: u64,
    /// UTF-8 name for messages; valid only during the `open` call.
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// Fills `[buf, buf + len)` from `offset`; thread-safe.
    pub read_at: unsafe extern "C" fn(
        ctx: *const c_void,
        offset: u64,
        buf: *mut u8,
        len: usize,
        err: *const ErrorSink,
    ) -> i32,
    /// Gives the source back to the host.
    pub release: unsafe extern "C" fn(ctx: *const c_void),
}

/// One extent of a block-status answer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawExtent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// [`EXTENT_DATA`] or [`EXTENT_ZERO`].
    pub kind: u32,
}

/// Receives the extents of a block-status answer, in order.
#[repr(C)]
pub struct ExtentSink {
    /// The caller's collection.
    pub ctx: *mut c_void,
    /// Appends one extent.
    pub push: unsafe extern "C" fn(ctx: *mut c_void, extent: *const RawExtent),
}

/// Facts about an open disk.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDiskInfo {
    /// Cluster or grain size in bytes; 0 when the format has none.
    pub cluster_size: u64,
}

/// The descriptor of a format plugin, ABI v1. Fields are only ever appended; the host reads
/// a field only when `header.struct_size` covers it.
///
/// Every function may be called from many threads at once, except that `close` is called once,
/// after every other call on that disk has returned. Disk handles come from `open`.
#[repr(C)]
pub struct FormatPluginV1 {
    /// Size and ABI version; always first.
    pub header: AbiHeader,
    /// What the plugin declares about itself.
    pub capabilities: Capabilities,
    /// NUL-terminated UTF-8 format name (`vmdk`).
    pub name: *const c_char,
    /// NUL-terminated UTF-8 plugin version.
    pub version: *const c_char,
    /// NUL-terminated, comma-separated other names; may be empty.
    pub aliases: *const c_char,
    /// The plugin's own state, passed to `probe` and `open`.
    pub plugin: *const c_void,
    /// Returns a `PROBE_*` verdict for a file's head, tail and length. Never fails.
    pub probe: unsafe extern "C" fn(
        plugin: *const c_void,
        head: *const u8,
        head_len: usize,
        tail: *const u8,
        tail_len: usize,
        file_len: u64,
    ) -> u32,
    /// Opens `source` (taking ownership of it); on success writes a disk handle to `disk`.
    pub open: unsafe extern "C" fn(
        plugin: *const c_void,
        source: *const HostSource,
        disk: *mut *mut c_void,
        err: *const ErrorSink,
    ) -> i32,
    /// Writes the disk's capacity in bytes to `out`.
    pub capacity:
        unsafe extern "C" fn(disk: *const c_void, out: *mut u64, err: *const ErrorSink) -> i32,
    /// Fills `[buf, buf + len)` with guest bytes from `offset` (the range lies within the disk).
    pub read_at: unsafe extern "C" fn(
        disk: *const c_void,
        offset: u64,
        buf: *mut u8,
        len: usize,
        err: *const ErrorSink,
    ) -> i32,
    /// Pushes the extents covering `[offset, offset + length)` to `sink`, in order.
    pub block_status: unsafe extern "C" fn(
        disk: *const c_void,
        offset: u64,
        length: u64,
        sink: *const ExtentSink,
        err: *const ErrorSink,
    ) -> i32,
    /// Writes facts about the disk to `out`.
    pub info: unsafe extern "C" fn(
        disk: *const c_void,
        out: *mut RawDiskInfo,
        err: *const ErrorSink,
    ) -> i32,
    /// Closes a disk handle.
    pub close: unsafe extern "C" fn(disk: *mut c_void),
}

// SAFETY: the descriptor is immutable after creation; `plugin` points to `Send + Sync` state.
unsafe impl Sync for FormatPluginV1 {}
// SAFETY: as above.
unsafe impl Send for FormatPluginV1 {}

/// The code of an error kind on the wire.
pub fn kind_code(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::Io => 1,
        ErrorKind::Corrupt => 2,
        ErrorKind::Unsupported => 3,
        ErrorKind::BackingNotAllowed => 4,
        ErrorKind::OutOfBounds => 5,
        ErrorKind::InvalidInput => 6,
    }
}

/// The error kind of a code on the wire; unknown codes read as [`ErrorKind::Io`].
pub fn code_kind(code: u32) -> ErrorKind {
    match code {
        2 => ErrorKind::Corrupt,
        3 => ErrorKind::Unsupported,
        4 => ErrorKind::BackingNotAllowed,
        5 => ErrorKind::OutOfBounds,
        6 => ErrorKind::InvalidInput,
        _ => ErrorKind::Io,
    }
}

/// A slot for the error a callee reports, and the sink that fills it.
#[derive(Default)]
pub struct ErrorSlot(Option<Error>);

impl ErrorSlot {
    /// A sink writing into this slot; valid while the slot is borrowed.
    pub fn sink(&mut self) -> ErrorSink {
        ErrorSink {
            ctx: (&mut self.0 as *mut Option<Error>).cast(),
            set: set_error,
        }
    }

    /// The reported error, or a generic one naming `what` when the callee reported none.
    pub fn take(self, what: &str) -> Error {
        self.0
            .unwrap_or_else(|| Error::io(format!("{what} failed without an error message")))
    }
}

unsafe extern "C" fn set_error(ctx: *mut c_void, kind: u32, message: *const u8, len: usize) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `ctx` comes from `ErrorSlot::sink`; the message is valid for `len` bytes.
        let slot = unsafe { &mut *ctx.cast::<Option<Error>>() };
        let bytes = unsafe { bytes_from(message, len) };
        *slot = Some(Error::new(
            code_kind(kind),
            String::from_utf8_lossy(bytes).into_owned(),
        ));
    });
}

/// Writes `error` to `sink`.
///
/// # Safety
/// `sink` must be null or point to a valid [`ErrorSink`].
pub unsafe fn report(sink: *const ErrorSink, error: &Error) {
    // SAFETY: the caller promises `sink` is valid or null.
    if let Some(sink) = unsafe { sink.as_ref() } {
        let message = error.message().as_bytes();
        // SAFETY: the sink contract: `set` copies the message before returning.
        unsafe {
            (sink.set)(
                sink.ctx,
                kind_code(error.kind()),
                message.as_ptr(),
                message.len(),
            )
        };
    }
}

/// `[ptr, ptr + len)` as a slice; empty when `len` is 0 (any `ptr`).
///
/// # Safety
/// When `len > 0`, `ptr` must be valid for reads of `len` bytes for `'a`.
pub(crate) unsafe fn bytes_from<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip() {
        for kind in [
            ErrorKind::Io,
            ErrorKind::Corrupt,
            ErrorKind::Unsupported,
            ErrorKind::BackingNotAllowed,
            ErrorKind::OutOfBounds,
            ErrorKind::InvalidInput,
        ] {
            assert_eq!(code_kind(kind_code(kind)), kind);
        }
        assert_eq!(code_kind(999), ErrorKind::Io);
    }

    #[test]
    fn errors_cross_the_sink() {
        let mut slot = ErrorSlot::default();
        let sink = slot.sink();
        unsafe { report(&sink, &Error::corrupt("x.vmdk: bad grain")) };
        let error = slot.take("read_at");
        assert_eq!(error.kind(), ErrorKind::Corrupt);
        assert_eq!(error.message(), "x.vmdk: bad grain");
        assert!(ErrorSlot::default().take("open").message().contains("open"));
    }
}
