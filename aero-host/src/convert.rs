//! `aero-host convert`: the guest-visible bytes as a sparse raw file or an AeroSparse image.

use aero_plugin_api::{ExtentKind, VirtualDisk};
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Pieces in which data extents are copied.
const COPY_PIECE: u64 = 4 * 1024 * 1024;

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A raw file; zero extents become holes.
    Raw,
    /// An AeroSparse v1 image.
    Aerosparse,
}

/// What a conversion wrote.
#[derive(Debug)]
pub struct Converted {
    /// Guest-visible bytes.
    pub virtual_size: u64,
    /// Bytes actually written (data).
    pub written: u64,
}

/// Converts `disk` to `out`, writing a temporary file beside it and renaming it at the end,
/// so a failure never leaves a file that looks complete.
pub fn convert(disk: &dyn VirtualDisk, out: &Path, target: Target) -> Result<Converted> {
    match target {
        Target::Raw => write_sparse_raw(disk, out),
        Target::Aerosparse => {
            let summary = format_aerosparse::write_aerosparse(disk, out, 64 * 1024)
                .map_err(|e| anyhow!("{e}"))?;
            Ok(Converted {
                virtual_size: disk.capacity(),
                written: summary.allocated_blocks * u64::from(summary.block_size),
            })
        }
    }
}

fn staging_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn write_sparse_raw(disk: &dyn VirtualDisk, out: &Path) -> Result<Converted> {
    let staging = staging_path(out);
    let result = (|| -> Result<Converted> {
        let file =
            File::create(&staging).with_context(|| format!("creating {}", staging.display()))?;
        let capacity = disk.capacity();
        file.set_len(capacity)
            .with_context(|| format!("sizing {}", staging.display()))?;
        let mut buf = vec![0u8; COPY_PIECE.min(capacity) as usize];
        let mut written = 0;
        for extent in disk.block_status(0, capacity).map_err(|e| anyhow!("{e}"))? {
            if extent.kind == ExtentKind::Zero {
                continue;
            }
            let mut offset = extent.offset;
            while offset < extent.end() {
                let len = (extent.end() - offset).min(COPY_PIECE) as usize;
                let piece = &mut buf[..len];
                disk.read_at(offset, piece).map_err(|e| anyhow!("{e}"))?;
                if piece.iter().any(|&b| b != 0) {
                    file.write_all_at(piece, offset)
                        .with_context(|| format!("writing {}", staging.display()))?;
                    written += len as u64;
                }
                offset += len as u64;
            }
        }
        file.sync_all()
            .with_context(|| format!("flushing {}", staging.display()))?;
        Ok(Converted {
            virtual_size: capacity,
            written,
        })
    })();
    match result {
        Ok(converted) => {
            std::fs::rename(&staging, out)
                .with_context(|| format!("renaming {} to {}", staging.display(), out.display()))?;
            Ok(converted)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e)
        }
    }
}
