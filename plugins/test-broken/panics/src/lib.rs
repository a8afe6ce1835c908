//! A plugin that panics: in `open` for empty files, in `read_at` for reads at offset 0.

use aero_plugin_api::{
    export_format_plugin, ByteSource, DiskFormat, OpenContext, ProbeInput, ProbeResult, Result,
    VirtualDisk,
};
use std::sync::Arc;
use test_broken::HookedDisk;

/// The panicking plugin.
#[derive(Default)]
pub struct PanickingFormat;

impl DiskFormat for PanickingFormat {
    fn name(&self) -> &str {
        "panics"
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
        assert!(!source.is_empty(), "open cannot cope with an empty file");
        Ok(Arc::new(HookedDisk {
            source,
            hook: |offset, _| assert!(offset != 0, "read_at cannot cope with offset 0"),
        }))
    }
}

export_format_plugin!(PanickingFormat);
