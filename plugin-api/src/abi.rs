//! The C ABI (version 1) for format plugins shipped as shared libraries.
//!
//! A plugin library exports one symbol, [`ENTRY_SYMBOL`], returning a [`FormatPluginV1`]
//! descriptor. Plugin authors never touch it: they implement [`DiskFormat`](crate::DiskFormat)
//! and write [`export_format_plugin!`](crate::export_format_plugin). The host's loader
//! (`aero-plugin-host`) turns a library back into an ordinary `Arc<dyn DiskFormat>`, using the
//! error channel ([`ErrorSlot`], [`report`]) defined here for both sides. See
//! `docs/plugins.md` for the rules.

mod export;
mod ffi;

pub use crate::Capabilities;
pub use export::ExportedPlugin;
pub use ffi::{
    code_kind, kind_code, panic_message, report, AbiHeader, ErrorSink, ErrorSlot, ExtentSink,
    FormatPluginV1, HostSource, RawDiskInfo, RawExtent, ABI_VERSION, ENTRY_SYMBOL, EXTENT_DATA,
    EXTENT_ZERO, PROBE_FALLBACK, PROBE_MATCH, PROBE_NO_MATCH, STATUS_ERROR, STATUS_OK,
    STATUS_PANIC,
};

/// Exports a [`DiskFormat`](crate::DiskFormat) from a `cdylib` over the C ABI:
/// `export_format_plugin!(VmdkFormat)`. The type must implement `Default`; the descriptor
/// carries its [`capabilities`](crate::DiskFormat::capabilities) (without
/// [`Capabilities::WRITE`]: ABI v1 carries no writer). The older form
/// `export_format_plugin!(VmdkFormat, capabilities)` still compiles and declares
/// `capabilities` instead. Use it once per library.
#[macro_export]
macro_rules! export_format_plugin {
    ($ty:ty) => {
        /// The plugin's entry point (aero-host plugin ABI).
        #[unsafe(no_mangle)]
        pub extern "C" fn aero_format_plugin() -> *const $crate::abi::FormatPluginV1 {
            static EXPORTED: ::std::sync::OnceLock<$crate::abi::ExportedPlugin> =
                ::std::sync::OnceLock::new();
            $crate::abi::ExportedPlugin::descriptor(
                &EXPORTED,
                || ::std::sync::Arc::new(<$ty as ::std::default::Default>::default()),
                ::std::option::Option::None,
            )
        }
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
                ::std::option::Option::Some($capabilities),
            )
        }
    };
}
