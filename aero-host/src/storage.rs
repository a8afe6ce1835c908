//! Storage helpers of the binary; opening a storage lives in `aero_plugin_host::storage`.

use aero_plugin_api::backend::opendal;

/// Whether an opendal error means "no such object".
pub fn is_not_found(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::NotFound
}
