//! The C ABI (version 1) for format plugins shipped as shared libraries.
//!
//! A plugin library exports one symbol, [`ENTRY_SYMBOL`], returning a [`FormatPluginV1`]
//! descriptor. Plugin authors never touch it: they implement [`DiskFormat`](crate::DiskFormat)
//! and write [`export_format_plugin!`](crate::export_format_plugin). The host (feature
//! `host`) loads a library with [`load_library`] or [`load_plugin`] and gets back an ordinary
//! `Arc<dyn DiskFormat>`. See `docs/plugins.md` for the rules.

#[cfg(feature = "host")]
mod build;
mod export;
mod ffi;
#[cfg(feature = "host")]
mod host;

#[cfg(feature = "host")]
pub use build::build_plugin_library;
pub use export::ExportedPlugin;
pub use ffi::{
    code_kind, kind_code, AbiHeader, Capabilities, ErrorSink, ExtentSink, FormatPluginV1,
    HostSource, RawDiskInfo, RawExtent, ABI_VERSION, ENTRY_SYMBOL, EXTENT_DATA, EXTENT_ZERO,
    PROBE_FALLBACK, PROBE_MATCH, PROBE_NO_MATCH, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
#[cfg(feature = "host")]
pub use host::{load_library, load_plugin, LoadedPlugin};

/// Exports a [`DiskFormat`](crate::DiskFormat) from a `cdylib` over the C ABI:
/// `export_format_plugin!(VmdkFormat)` or
/// `export_format_plugin!(VmdkFormat, Capabilities::ZERO_EXTENTS)`. The type must implement
/// `Default`. Use it once per library.
#[macro_export]
macro_rules! export_format_plugin {
    ($ty:ty) => {
        $crate::export_format_plugin!($ty, $crate::abi::Capabilities::NONE);
    };
    ($ty:ty, $capabilities:expr) => {
        /// The plugin's entry point (aero-host plugin ABI).
        #[unsafe(no_mangle)]
        pub extern "C" fn aero_format_plugin() -> *const $crate::abi::FormatPluginV1 {
            static EXPORTED: ::std::sync::OnceLock<$crate::abi::ExportedPlugin> =
                ::std::sync::OnceLock::new();
            $crate::abi::ExportedPlugin::descriptor(
                &EXPORTED,
                || ::std::sync::Arc::new(<$ty as ::std::default::Default>::default()),
                $capabilities,
            )
        }
    };
}
