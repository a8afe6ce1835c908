//! The plugin side: the C shims [`export_format_plugin!`](crate::export_format_plugin)
//! generates around an ordinary [`DiskFormat`].

use super::ffi::{
    bytes_from, panic_message, report, AbiHeader, ErrorSink, ErrorSlot, ExtentSink, FormatPluginV1,
    HostSource, RawDiskInfo, RawExtent, ABI_VERSION, EXTENT_DATA, EXTENT_ZERO, PROBE_FALLBACK,
    PROBE_MATCH, PROBE_NO_MATCH, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use crate::{
    Backing, BackingResolver, ByteSource, Capabilities, DiskFormat, Error, ErrorKind, ExtentKind,
    OpenContext, ProbeInput, ProbeResult, Result, VirtualDisk,
};
use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

/// A format plugin exported over the C ABI: its descriptor and everything it points to.
pub struct ExportedPlugin {
    descriptor: FormatPluginV1,
    _strings: [CString; 3],
    _format: Box<Arc<dyn DiskFormat>>,
}

impl ExportedPlugin {
    /// The descriptor of the plugin made by `create`, built once into `cell`; null when
    /// `create` panics. It declares `capabilities`, or when `None` the plugin's own
    /// [`DiskFormat::capabilities`] without [`Capabilities::WRITE`]. Called by the entry point
    /// that `export_format_plugin!` generates.
    pub fn descriptor(
        cell: &'static OnceLock<ExportedPlugin>,
        create: fn() -> Arc<dyn DiskFormat>,
        capabilities: Option<Capabilities>,
    ) -> *const FormatPluginV1 {
        catch_unwind(AssertUnwindSafe(|| {
            let exported = cell.get_or_init(|| Self::new(create(), capabilities));
            &exported.descriptor as *const FormatPluginV1
        }))
        .unwrap_or(std::ptr::null())
    }

    fn new(format: Arc<dyn DiskFormat>, capabilities: Option<Capabilities>) -> Self {
        let capabilities =
            capabilities.unwrap_or_else(|| format.capabilities().without(Capabilities::WRITE));
        let c_string = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let strings = [
            c_string(format.name()),
            c_string(format.version()),
            c_string(&format.aliases().join(",")),
        ];
        let format = Box::new(format);
        let descriptor = FormatPluginV1 {
            header: AbiHeader {
                struct_size: std::mem::size_of::<FormatPluginV1>() as u32,
                abi_version: ABI_VERSION,
            },
            capabilities,
            name: strings[0].as_ptr(),
            version: strings[1].as_ptr(),
            aliases: strings[2].as_ptr(),
            plugin: (&*format as *const Arc<dyn DiskFormat>).cast(),
            probe,
            open,
            capacity,
            read_at,
            block_status,
            info,
            close,
        };
        ExportedPlugin {
            descriptor,
            _strings: strings,
            _format: format,
        }
    }
}

/// Runs `f`, turning its error or panic into a status and a report to `err`.
fn call(what: &str, err: *const ErrorSink, f: impl FnOnce() -> Result<()>) -> i32 {
    let (status, error) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(error)) => (STATUS_ERROR, error),
        Err(payload) => (
            STATUS_PANIC,
            Error::io(format!("panicked in {what}: {}", panic_message(&*payload))),
        ),
    };
    // SAFETY: the host passes a valid sink or null.
    unsafe { report(err, &error) };
    status
}

/// The disk behind a handle made by `open`.
///
/// # Safety
/// `disk` must be a live handle from `open`.
unsafe fn disk_ref<'a>(disk: *const c_void) -> &'a Arc<dyn VirtualDisk> {
    // SAFETY: the caller's promise.
    unsafe { &*disk.cast::<Arc<dyn VirtualDisk>>() }
}

unsafe extern "C" fn probe(
    plugin: *const c_void,
    head: *const u8,
    head_len: usize,
    tail: *const u8,
    tail_len: usize,
    file_len: u64,
) -> u32 {
    catch_unwind(|| {
        // SAFETY: `plugin` is the descriptor's own pointer; the host passes valid slices.
        let format = unsafe { &*plugin.cast::<Arc<dyn DiskFormat>>() };
        let input = ProbeInput::new(
            unsafe { bytes_from(head, head_len) },
            unsafe { bytes_from(tail, tail_len) },
            file_len,
        );
        match format.probe(&input) {
            ProbeResult::NoMatch => PROBE_NO_MATCH,
            ProbeResult::Match => PROBE_MATCH,
            ProbeResult::Fallback => PROBE_FALLBACK,
        }
    })
    .unwrap_or(PROBE_NO_MATCH)
}

unsafe extern "C" fn open(
    plugin: *const c_void,
    source: *const HostSource,
    disk: *mut *mut c_void,
    err: *const ErrorSink,
) -> i32 {
    call("open", err, || {
        // SAFETY: the host passes a valid source, adopted first so it is always released.
        let source = unsafe { source.as_ref() }
            .map(|raw| unsafe { ForeignSource::adopt(*raw) })
            .ok_or_else(|| Error::invalid_input("open was called without a source"))?;
        if disk.is_null() {
            return Err(Error::invalid_input(
                "open was called without an output handle",
            ));
        }
        // SAFETY: `plugin` is the descriptor's own pointer.
        let format = unsafe { &*plugin.cast::<Arc<dyn DiskFormat>>() };
        let backing = NoBacking {
            image: source.name.clone(),
        };
        let opened = format.open(Arc::new(source), &OpenContext::new(&backing))?;
        // SAFETY: checked non-null above; the host owns the handle until `close`.
        unsafe { *disk = Box::into_raw(Box::new(opened)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn capacity(disk: *const c_void, out: *mut u64, err: *const ErrorSink) -> i32 {
    call("capacity", err, || {
        // SAFETY: the host passes a live handle and a valid output.
        unsafe { *out = disk_ref(disk).capacity() };
        Ok(())
    })
}

unsafe extern "C" fn read_at(
    disk: *const c_void,
    offset: u64,
    buf: *mut u8,
    len: usize,
    err: *const ErrorSink,
) -> i32 {
    call("read_at", err, || {
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: the host passes a buffer valid for `len` bytes.
            unsafe { std::slice::from_raw_parts_mut(buf, len) }
        };
        // SAFETY: the host passes a live handle.
        unsafe { disk_ref(disk) }.read_at(offset, buf)
    })
}

unsafe extern "C" fn block_status(
    disk: *const c_void,
    offset: u64,
    length: u64,
    sink: *const ExtentSink,
    err: *const ErrorSink,
) -> i32 {
    call("block_status", err, || {
        // SAFETY: the host passes a live handle and a valid sink.
        let extents = unsafe { disk_ref(disk) }.block_status(offset, length)?;
        let sink = unsafe { &*sink };
        for extent in extents {
            let raw = RawExtent {
                offset: extent.offset,
                length: extent.length,
                kind: match extent.kind {
                    ExtentKind::Data => EXTENT_DATA,
                    ExtentKind::Zero => EXTENT_ZERO,
                },
            };
            // SAFETY: the sink contract.
            unsafe { (sink.push)(sink.ctx, &raw) };
        }
        Ok(())
    })
}

unsafe extern "C" fn info(
    disk: *const c_void,
    out: *mut RawDiskInfo,
    err: *const ErrorSink,
) -> i32 {
    call("info", err, || {
        // SAFETY: the host passes a live handle and a valid output.
        let info = unsafe { disk_ref(disk) }.info();
        unsafe {
            *out = RawDiskInfo {
                cluster_size: info.cluster_size.unwrap_or(0),
            }
        };
        Ok(())
    })
}

unsafe extern "C" fn close(disk: *mut c_void) {
    if !disk.is_null() {
        // SAFETY: the host closes each handle from `open` once, after its last use.
        let _ =
            catch_unwind(|| drop(unsafe { Box::from_raw(disk.cast::<Arc<dyn VirtualDisk>>()) }));
    }
}

/// The host's byte source as seen by the plugin.
struct ForeignSource {
    raw: HostSource,
    name: String,
}

// SAFETY: the ABI requires the host's source callbacks to be thread-safe.
unsafe impl Send for ForeignSource {}
// SAFETY: as above.
unsafe impl Sync for ForeignSource {}

impl ForeignSource {
    /// Takes ownership of `raw` (released on drop), copying its name.
    ///
    /// # Safety
    /// `raw` must be a source the host handed to `open`.
    unsafe fn adopt(raw: HostSource) -> Self {
        // SAFETY: the name is valid during `open`.
        let name =
            String::from_utf8_lossy(unsafe { bytes_from(raw.name, raw.name_len) }).into_owned();
        ForeignSource { raw, name }
    }
}

impl ByteSource for ForeignSource {
    fn len(&self) -> u64 {
        self.raw.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut slot = ErrorSlot::default();
        let sink = slot.sink();
        // SAFETY: the host's callback, with a buffer valid for its length.
        let status =
            unsafe { (self.raw.read_at)(self.raw.ctx, offset, buf.as_mut_ptr(), buf.len(), &sink) };
        if status == STATUS_OK {
            Ok(())
        } else {
            Err(slot.take(&format!("reading {}", self.name)))
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ForeignSource {
    fn drop(&mut self) {
        // SAFETY: released exactly once, here.
        unsafe { (self.raw.release)(self.raw.ctx) };
    }
}

/// ABI v1 does not carry backing files: they are refused.
struct NoBacking {
    image: String,
}

impl BackingResolver for NoBacking {
    fn open_backing(&self, reference: &str, _format: Option<&str>) -> Result<Backing> {
        Err(Error::new(
            ErrorKind::BackingNotAllowed,
            format!(
                "{} has a backing file '{reference}'; format plugins loaded from a library \
                 cannot open backing files (plugin ABI v{ABI_VERSION})",
                self.image
            ),
        ))
    }
}
