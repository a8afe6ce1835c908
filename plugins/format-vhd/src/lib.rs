//! VHD (Virtual PC / Hyper-V "vpc") disk images: fixed, dynamic and differencing, read-only.
//!
//! The guest-visible bytes equal what `qemu-img convert -f vpc -O raw` produces, including
//! qemu's choice of capacity (CHS geometry for images written by Virtual PC and old qemu,
//! `current_size` otherwise). Differencing disks read through their parent, which is opened by
//! the host's [`BackingResolver`](aero_plugin_api::BackingResolver) only when allowed.

mod block_table;
mod dynamic_header;
mod fixed;
mod footer;
mod open;
mod sparse;

use aero_plugin_api::{
    register_format, ByteSource, Capabilities, DiskFormat, Error, OpenContext, ProbeInput,
    ProbeResult, Result, VirtualDisk,
};
use std::sync::Arc;

/// The VHD format plugin.
#[derive(Default)]
pub struct VhdFormat;

register_format!(VhdFormat);

impl DiskFormat for VhdFormat {
    fn name(&self) -> &str {
        "vhd"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ZERO_EXTENTS | Capabilities::BACKING_FILES
    }

    fn aliases(&self) -> &[&str] {
        &["vpc"]
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
        if open::probe(input) {
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
        open::open(source, ctx)
    }
}

/// Returns an out-of-bounds error unless `[offset, offset + len)` lies within `capacity`.
pub(crate) fn check_range(offset: u64, len: u64, capacity: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(Error::out_of_bounds(offset, len, capacity)),
    }
}
