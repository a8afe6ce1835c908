//! qcow2 format plugin: reads qcow2 version 2 and 3 images (read-only), including compressed
//! clusters (deflate, zstd), extended L2 entries with subclusters and backing files.

mod compressed;
mod disk;
mod header;
mod l2;

use aero_plugin_api::{
    register_format, ByteSource, Capabilities, DiskFormat, OpenContext, ProbeInput, ProbeResult,
    Result, VirtualDisk,
};
use std::sync::Arc;

/// The qcow2 format plugin.
#[derive(Default)]
pub struct Qcow2Format;

register_format!(Qcow2Format);

impl DiskFormat for Qcow2Format {
    fn name(&self) -> &str {
        "qcow2"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ZERO_EXTENTS | Capabilities::BACKING_FILES
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The qcow2 magic. The header is checked by `open`, so a damaged qcow2 image (or one of an
    /// unsupported version) is refused as qcow2 instead of being read as raw.
    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
        if input.head.starts_with(&header::MAGIC) {
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
        Ok(Arc::new(disk::Qcow2Disk::open(source, ctx)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(head: &[u8], len: u64) -> ProbeResult {
        Qcow2Format.probe(&ProbeInput::new(head, &[], len))
    }

    #[test]
    fn probes_the_magic_whatever_the_version() {
        let mut head = vec![0u8; 100];
        head[..4].copy_from_slice(b"QFI\xfb");
        assert_eq!(probe(&head[..4], 4), ProbeResult::Match);
        for version in [0, 1, 2, 3, 4] {
            head[7] = version;
            assert_eq!(probe(&head, 100), ProbeResult::Match);
        }
        assert_eq!(probe(b"QFI", 3), ProbeResult::NoMatch);
        assert_eq!(probe(&[0u8; 100], 100), ProbeResult::NoMatch);
    }
}
