//! A plugin claiming raw images that returns every byte inverted: the conformance suite must
//! fail it.

use aero_plugin_api::{
    export_format_plugin, ByteSource, DiskFormat, OpenContext, ProbeInput, ProbeResult, Result,
    VirtualDisk,
};
use std::sync::Arc;
use test_broken::HookedDisk;

/// The plugin with wrong bytes.
#[derive(Default)]
pub struct WrongBytesFormat;

impl DiskFormat for WrongBytesFormat {
    fn name(&self) -> &str {
        "raw"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn probe(&self, _input: &ProbeInput<'_>) -> ProbeResult {
        ProbeResult::Fallback
    }

    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        _ctx: &OpenContext<'_>,
    ) -> Result<Arc<dyn VirtualDisk>> {
        Ok(Arc::new(HookedDisk {
            source,
            hook: |_, bytes| bytes.iter_mut().for_each(|b| *b = !*b),
        }))
    }
}

export_format_plugin!(WrongBytesFormat);
