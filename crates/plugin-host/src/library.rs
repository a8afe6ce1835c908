//! Loading a format plugin library (C ABI v1) and wrapping it in the ordinary traits.

use aero_plugin_api::abi::{
    panic_message, report, AbiHeader, ErrorSink, ErrorSlot, ExtentSink, FormatPluginV1, HostSource,
    RawDiskInfo, RawExtent, ABI_VERSION, ENTRY_SYMBOL, EXTENT_DATA, EXTENT_ZERO, PROBE_FALLBACK,
    PROBE_MATCH, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use aero_plugin_api::{
    ByteSource, Capabilities, DiskFormat, DiskInfo, Error, Extent, ExtentKind, OpenContext,
    ProbeInput, ProbeResult, Result, VirtualDisk,
};
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A format plugin loaded from a shared library, with where it came from.
#[non_exhaustive]
pub struct LoadedPlugin {
    /// The plugin, usable like a built-in one; its `capabilities()` are the descriptor's.
    pub format: Arc<dyn DiskFormat>,
    /// The library it was loaded from.
    pub path: PathBuf,
    /// The ABI version the plugin was built for.
    pub abi_version: u32,
}

/// Loads the format plugin library at `path`; see [`load_plugin`].
pub fn load_library(path: &Path) -> Result<Arc<dyn DiskFormat>> {
    load_plugin(path).map(|plugin| plugin.format)
}

/// Loads the format plugin library at `path`, checking its ABI version and descriptor size.
/// The library is never unloaded.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin> {
    let shown = path.display();
    // SAFETY: loading a library runs its initialisers; plugins are trusted code by
    // configuration. The library is leaked below, so nothing it hands out ever dangles.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| Error::io(format!("loading format plugin {shown}: {e}")))?;
    // SAFETY: the entry symbol has this signature in every ABI version.
    let entry: unsafe extern "C" fn() -> *const AbiHeader =
        *unsafe { library.get(ENTRY_SYMBOL.as_bytes()) }.map_err(|e| {
            Error::invalid_input(format!(
                "{shown} is not an aero-host format plugin (no symbol {ENTRY_SYMBOL}): {e}"
            ))
        })?;
    std::mem::forget(library);
    // SAFETY: the symbol is the plugin's entry point and the library is never unloaded.
    unsafe { plugin_from_entry(entry, path) }
}

/// Checks and wraps the descriptor returned by `entry`.
///
/// # Safety
/// `entry` must follow the entry-point contract, and everything it returns must live forever.
unsafe fn plugin_from_entry(
    entry: unsafe extern "C" fn() -> *const AbiHeader,
    path: &Path,
) -> Result<LoadedPlugin> {
    let shown = path.display();
    // SAFETY: the entry point catches its own panics and returns a static descriptor or null.
    let header_ptr = unsafe { entry() };
    // SAFETY: every descriptor starts with an `AbiHeader`.
    let header = unsafe { header_ptr.as_ref() }.copied().ok_or_else(|| {
        Error::invalid_input(format!(
            "format plugin {shown}: {ENTRY_SYMBOL} returned no descriptor (the plugin failed to initialise)"
        ))
    })?;
    if header.abi_version != ABI_VERSION {
        return Err(Error::unsupported(format!(
            "format plugin {shown} was built for plugin ABI version {}, but this aero-host \
             supports ABI version {ABI_VERSION}; rebuild the plugin against a matching aero-plugin-api",
            header.abi_version
        )));
    }
    let needed = std::mem::size_of::<FormatPluginV1>();
    if (header.struct_size as usize) < needed {
        return Err(Error::unsupported(format!(
            "format plugin {shown}: its ABI version {} descriptor is {} bytes, but ABI version \
             {ABI_VERSION} needs at least {needed}",
            header.abi_version, header.struct_size
        )));
    }
    // SAFETY: version and size checked: the pointer is a v1 descriptor in a leaked library.
    let descriptor: &'static FormatPluginV1 = unsafe { &*header_ptr.cast::<FormatPluginV1>() };
    let string = |ptr: *const c_char, what: &str| -> Result<&'static str> {
        // SAFETY: the descriptor's strings are NUL-terminated and live as long as the library.
        let text = (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_str());
        match text {
            Some(Ok(text)) => Ok(text),
            _ => Err(Error::invalid_input(format!(
                "format plugin {shown}: its {what} is missing or not UTF-8"
            ))),
        }
    };
    let name = string(descriptor.name, "name")?;
    if name.is_empty() {
        return Err(Error::invalid_input(format!(
            "format plugin {shown}: its name is empty"
        )));
    }
    let format = LibraryFormat {
        descriptor,
        name,
        version: string(descriptor.version, "version")?,
        aliases: string(descriptor.aliases, "aliases")?
            .split(',')
            .filter(|a| !a.is_empty())
            .collect(),
        path: path.to_path_buf(),
    };
    Ok(LoadedPlugin {
        format: Arc::new(format),
        path: path.to_path_buf(),
        abi_version: header.abi_version,
    })
}

/// A plugin library as a [`DiskFormat`].
struct LibraryFormat {
    descriptor: &'static FormatPluginV1,
    name: &'static str,
    version: &'static str,
    aliases: Vec<&'static str>,
    path: PathBuf,
}

/// A plugin's failure as an error; panics are marked with the plugin's name and library.
fn plugin_error(status: i32, slot: ErrorSlot, what: &str, name: &str, path: &Path) -> Error {
    let error = slot.take(&format!("format plugin '{name}' {what}"));
    if status == STATUS_PANIC {
        error.context(format!("format plugin '{name}' ({})", path.display()))
    } else {
        error
    }
}

impl DiskFormat for LibraryFormat {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[&str] {
        &self.aliases
    }

    fn version(&self) -> &str {
        self.version
    }

    fn api_version(&self) -> u32 {
        self.descriptor.header.abi_version
    }

    fn capabilities(&self) -> Capabilities {
        self.descriptor.capabilities
    }

    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
        // SAFETY: valid slices for the duration of the call.
        let verdict = unsafe {
            (self.descriptor.probe)(
                self.descriptor.plugin,
                input.head.as_ptr(),
                input.head.len(),
                input.tail.as_ptr(),
                input.tail.len(),
                input.len,
            )
        };
        match verdict {
            PROBE_MATCH => ProbeResult::Match,
            PROBE_FALLBACK => ProbeResult::Fallback,
            _ => ProbeResult::NoMatch,
        }
    }

    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        _ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>> {
        let name = source.name().to_string();
        let raw = HostSource {
            ctx: Box::into_raw(Box::new(Arc::clone(&source))).cast(),
            len: source.len(),
            name: name.as_ptr(),
            name_len: name.len(),
            read_at: source_read_at,
            release: source_release,
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut slot = ErrorSlot::default();
        let sink = slot.sink();
        // SAFETY: the plugin takes ownership of `raw` and releases it.
        let status =
            unsafe { (self.descriptor.open)(self.descriptor.plugin, &raw, &mut handle, &sink) };
        if status != STATUS_OK {
            return Err(plugin_error(status, slot, "open", self.name, &self.path));
        }
        if handle.is_null() {
            return Err(Error::invalid_input(format!(
                "format plugin '{}' ({}) opened {name} but returned no disk",
                self.name,
                self.path.display()
            )));
        }
        let mut disk = LibraryDisk {
            descriptor: self.descriptor,
            handle,
            format: self.name,
            path: self.path.clone(),
            capacity: 0,
            info: DiskInfo::default(),
        };
        disk.capacity = disk.query("capacity", |h, e| {
            let mut out = 0u64;
            // SAFETY: a live handle and a valid output.
            let status = unsafe { (self.descriptor.capacity)(h, &mut out, e) };
            (status, out)
        })?;
        let raw_info = disk.query("info", |h, e| {
            let mut out = RawDiskInfo::default();
            // SAFETY: a live handle and a valid output.
            let status = unsafe { (self.descriptor.info)(h, &mut out, e) };
            (status, out)
        })?;
        disk.info.cluster_size = (raw_info.cluster_size != 0).then_some(raw_info.cluster_size);
        Ok(Arc::new(disk))
    }
}

/// An open disk of a plugin library.
struct LibraryDisk {
    descriptor: &'static FormatPluginV1,
    handle: *mut c_void,
    format: &'static str,
    path: PathBuf,
    capacity: u64,
    info: DiskInfo,
}

// SAFETY: the ABI requires every disk function but `close` to be thread-safe; `close` runs in
// `drop`, after every other use.
unsafe impl Send for LibraryDisk {}
// SAFETY: as above.
unsafe impl Sync for LibraryDisk {}

impl LibraryDisk {
    /// Calls a plugin function that fills one output, turning its failure into an error.
    fn query<T>(
        &self,
        what: &str,
        call: impl FnOnce(*const c_void, *const ErrorSink) -> (i32, T),
    ) -> Result<T> {
        let mut slot = ErrorSlot::default();
        let sink = slot.sink();
        let (status, out) = call(self.handle, &sink);
        if status == STATUS_OK {
            Ok(out)
        } else {
            Err(plugin_error(status, slot, what, self.format, &self.path))
        }
    }

    /// The extents of a block-status answer; an unknown kind is an error. Order and cover
    /// are checked by the [`Checked`](crate::Checked) filter around every disk.
    fn extents(&self, offset: u64, length: u64, raw: Vec<RawExtent>) -> Result<Vec<Extent>> {
        raw.into_iter()
            .map(|extent| {
                let kind = match extent.kind {
                    EXTENT_DATA => ExtentKind::Data,
                    EXTENT_ZERO => ExtentKind::Zero,
                    other => {
                        return Err(Error::corrupt(format!(
                            "format plugin '{}' ({}) returned invalid block status for [{offset}, {}): unknown extent kind {other}",
                            self.format,
                            self.path.display(),
                            offset + length
                        )))
                    }
                };
                Ok(Extent::new(extent.offset, extent.length, kind))
            })
            .collect()
    }
}

impl VirtualDisk for LibraryDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.query("read_at", |h, e| {
            // SAFETY: a live handle and a buffer valid for its length.
            let status =
                unsafe { (self.descriptor.read_at)(h, offset, buf.as_mut_ptr(), buf.len(), e) };
            (status, ())
        })
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let mut raw: Vec<RawExtent> = Vec::new();
        let sink = ExtentSink {
            ctx: (&mut raw as *mut Vec<RawExtent>).cast(),
            push: push_extent,
        };
        self.query("block_status", |h, e| {
            // SAFETY: a live handle and a sink valid for the call.
            let status = unsafe { (self.descriptor.block_status)(h, offset, length, &sink, e) };
            (status, ())
        })?;
        self.extents(offset, length, raw)
    }

    fn info(&self) -> DiskInfo {
        self.info.clone()
    }
}

impl Drop for LibraryDisk {
    fn drop(&mut self) {
        // SAFETY: the handle came from `open` and is not used again.
        unsafe { (self.descriptor.close)(self.handle) };
    }
}

unsafe extern "C" fn push_extent(ctx: *mut c_void, extent: *const RawExtent) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the collection of `block_status`; `extent` is valid for the call.
        if let Some(extent) = unsafe { extent.as_ref() } {
            unsafe { &mut *ctx.cast::<Vec<RawExtent>>() }.push(*extent);
        }
    }));
}

unsafe extern "C" fn source_read_at(
    ctx: *const c_void,
    offset: u64,
    buf: *mut u8,
    len: usize,
    err: *const ErrorSink,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the source boxed in `open`, alive until `release`.
        let source = unsafe { &*ctx.cast::<Arc<dyn ByteSource>>() };
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: the plugin passes a buffer valid for `len` bytes.
            unsafe { std::slice::from_raw_parts_mut(buf, len) }
        };
        source.read_at(offset, buf)
    }))
    .unwrap_or_else(|payload| {
        Err(Error::io(format!(
            "byte source panicked: {}",
            panic_message(&*payload)
        )))
    });
    match result {
        Ok(()) => STATUS_OK,
        Err(error) => {
            // SAFETY: the plugin passes a valid sink or null.
            unsafe { report(err, &error) };
            STATUS_ERROR
        }
    }
}

unsafe extern "C" fn source_release(ctx: *const c_void) {
    // SAFETY: `ctx` is the source boxed in `open`, released once.
    let _ = catch_unwind(|| {
        drop(unsafe { Box::from_raw(ctx.cast_mut().cast::<Arc<dyn ByteSource>>()) })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checked;
    use aero_plugin_api::abi::ExportedPlugin;
    use aero_plugin_api::{Backing, BackingResolver, ErrorKind, MemorySource};
    use std::sync::OnceLock;

    /// The source's bytes, misbehaving on request: open panics for sources named `panic`,
    /// reads at offset 13 panic, at 17 fail, at 19 read past the end of the source.
    #[derive(Default)]
    struct Echo;

    struct EchoDisk(Arc<dyn ByteSource>);

    impl DiskFormat for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn aliases(&self) -> &[&str] {
            &["e", "mirror"]
        }
        fn version(&self) -> &str {
            "0.9.1"
        }
        fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
            if input.head.starts_with(b"ECHO") && input.len > 4 {
                ProbeResult::Match
            } else {
                ProbeResult::NoMatch
            }
        }
        fn open(
            &self,
            source: Arc<dyn ByteSource>,
            ctx: &OpenContext<'_>,
        ) -> Result<Arc<dyn VirtualDisk>> {
            match source.name() {
                "panic" => panic!("open exploded"),
                "backed" => ctx.backing.open_backing("base.img", None).map(|b| b.disk),
                _ => Ok(Arc::new(EchoDisk(source))),
            }
        }
    }

    impl VirtualDisk for EchoDisk {
        fn capacity(&self) -> u64 {
            self.0.len()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            match offset {
                13 => panic!("read exploded"),
                17 => Err(Error::corrupt(format!("{}: bad byte at 17", self.0.name()))),
                19 => self.0.read_at(1000, buf),
                _ => self.0.read_at(offset, buf),
            }
        }
        fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
            let half = length / 2;
            Ok([
                (offset, half, ExtentKind::Data),
                (offset + half, length - half, ExtentKind::Zero),
            ]
            .into_iter()
            .filter(|(_, length, _)| *length > 0)
            .map(|(offset, length, kind)| Extent::new(offset, length, kind))
            .collect())
        }
        fn info(&self) -> DiskInfo {
            DiskInfo::new(Some(4096))
        }
    }

    unsafe extern "C" fn echo_entry() -> *const AbiHeader {
        static CELL: OnceLock<ExportedPlugin> = OnceLock::new();
        ExportedPlugin::descriptor(&CELL, || Arc::new(Echo), Some(Capabilities::ZERO_EXTENTS))
            .cast()
    }

    fn echo() -> LoadedPlugin {
        unsafe { plugin_from_entry(echo_entry, Path::new("/lib/libecho.so")) }.unwrap()
    }

    fn source(name: &str, bytes: &[u8]) -> Arc<dyn ByteSource> {
        Arc::new(MemorySource::new(name, bytes.to_vec()))
    }

    fn open(name: &str, bytes: &[u8]) -> Result<Arc<dyn VirtualDisk>> {
        let resolver = NoResolver;
        echo()
            .format
            .open(source(name, bytes), &OpenContext::new(&resolver))
    }

    struct NoResolver;
    impl BackingResolver for NoResolver {
        fn open_backing(&self, _: &str, _: Option<&str>) -> Result<Backing> {
            unreachable!("the library adapter never passes the host's resolver across")
        }
    }

    #[test]
    fn describes_itself() {
        let plugin = echo();
        assert_eq!(plugin.format.name(), "echo");
        assert_eq!(plugin.format.version(), "0.9.1");
        assert_eq!(plugin.format.aliases(), ["e", "mirror"]);
        assert_eq!(plugin.abi_version, ABI_VERSION);
        assert_eq!(plugin.format.api_version(), ABI_VERSION);
        assert_eq!(plugin.format.capabilities(), Capabilities::ZERO_EXTENTS);
        let probe = |head: &[u8]| plugin.format.probe(&ProbeInput::new(head, &[], 10));
        assert_eq!(probe(b"ECHO...."), ProbeResult::Match);
        assert_eq!(probe(b"QFI"), ProbeResult::NoMatch);
    }

    #[test]
    fn reads_status_and_info_cross_the_boundary() {
        let bytes: Vec<u8> = (0..64u8).collect();
        let disk = Checked::wrap(open("img", &bytes).unwrap(), "echo");
        assert_eq!(disk.capacity(), 64);
        assert_eq!(disk.info().cluster_size, Some(4096));
        let mut buf = [0u8; 4];
        disk.read_at(40, &mut buf).unwrap();
        assert_eq!(buf, [40, 41, 42, 43]);
        disk.read_at(64, &mut []).unwrap();
        assert_eq!(
            disk.read_at(62, &mut buf).unwrap_err().kind(),
            ErrorKind::OutOfBounds
        );
        let extents = disk.block_status(10, 11).unwrap();
        assert_eq!(extents.len(), 2);
        assert_eq!((extents[1].offset, extents[1].length), (15, 6));
        assert_eq!(extents[1].kind, ExtentKind::Zero);
        assert!(disk.block_status(0, 0).unwrap().is_empty());
    }

    #[test]
    fn errors_and_panics_become_errors() {
        let disk = open("img", &[7u8; 64]).unwrap();
        let mut buf = [0u8; 2];
        let error = disk.read_at(17, &mut buf).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt);
        assert_eq!(error.message(), "img: bad byte at 17");
        let error = disk.read_at(13, &mut buf).unwrap_err();
        assert!(
            error
                .message()
                .contains("panicked in read_at: read exploded"),
            "{error}"
        );
        assert!(error.message().contains("/lib/libecho.so"), "{error}");
        disk.read_at(20, &mut buf).unwrap();
        let error = open("panic", &[0; 8]).err().unwrap();
        assert!(
            error.message().contains("panicked in open: open exploded"),
            "{error}"
        );
    }

    #[test]
    fn source_errors_and_backing_files_cross_back() {
        let disk = open("short", &[1u8; 32]).unwrap();
        let error = disk.read_at(19, &mut [0u8; 2]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt);
        assert!(
            error
                .message()
                .starts_with("short: read of 2 bytes at offset 1000"),
            "{error}"
        );
        let error = open("backed", &[0; 8]).err().unwrap();
        assert_eq!(error.kind(), ErrorKind::BackingNotAllowed);
        assert!(
            error
                .message()
                .contains("backed has a backing file 'base.img'"),
            "{error}"
        );
    }

    unsafe extern "C" fn future_entry() -> *const AbiHeader {
        static HEADER: AbiHeader = AbiHeader {
            struct_size: 4096,
            abi_version: 2,
        };
        &HEADER
    }

    unsafe extern "C" fn truncated_entry() -> *const AbiHeader {
        static HEADER: AbiHeader = AbiHeader {
            struct_size: 8,
            abi_version: ABI_VERSION,
        };
        &HEADER
    }

    unsafe extern "C" fn null_entry() -> *const AbiHeader {
        std::ptr::null()
    }

    #[test]
    fn refuses_mismatched_descriptors() {
        let path = Path::new("/opt/plugins/libnew.so");
        let error = unsafe { plugin_from_entry(future_entry, path) }
            .err()
            .unwrap();
        let message = error.message();
        assert!(message.contains("/opt/plugins/libnew.so"), "{message}");
        assert!(message.contains("ABI version 2"), "{message}");
        assert!(message.contains("ABI version 1"), "{message}");
        let error = unsafe { plugin_from_entry(truncated_entry, path) }
            .err()
            .unwrap();
        assert!(error.message().contains("8 bytes"), "{error}");
        let error = unsafe { plugin_from_entry(null_entry, path) }
            .err()
            .unwrap();
        assert!(error.message().contains("no descriptor"), "{error}");
        let error = load_library(Path::new("/nonexistent/libx.so"))
            .err()
            .unwrap();
        assert!(error.message().contains("/nonexistent/libx.so"), "{error}");
    }
}
