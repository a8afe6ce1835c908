//! A plugin built for an ABI version this host does not speak (99): the host must refuse it.

use aero_plugin_api::abi::AbiHeader;

/// The entry point, returning only a header from the future.
#[unsafe(no_mangle)]
pub extern "C" fn aero_format_plugin() -> *const AbiHeader {
    static HEADER: AbiHeader = AbiHeader {
        struct_size: 4096,
        abi_version: 99,
    };
    &HEADER
}
