//! `aero-host convert`: the guest-visible bytes as a sparse raw file or an AeroSparse image.

use aero_plugin_api::{ExtentKind, VirtualDisk};
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Pieces in which data extents are copied.
const COPY_PIECE: u64 = 4 * 1024 * 1024;
/// Threads copying pieces at once (reads and writes overlap).
const COPY_THREADS: usize = 4;

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
/// so a failure never leaves a file that looks complete. Like `qemu-img convert` and `cp`, it
/// leaves flushing to the page cache (run `sync` for durability against power loss).
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
        let pieces = data_pieces(disk)?;
        let next = AtomicUsize::new(0);
        let written = AtomicU64::new(0);
        let copy = || -> Result<()> {
            let mut buf = vec![0u8; COPY_PIECE as usize];
            while let Some(&(offset, len)) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                let piece = &mut buf[..len];
                disk.read_at(offset, piece).map_err(|e| anyhow!("{e}"))?;
                if piece.iter().any(|&b| b != 0) {
                    file.write_all_at(piece, offset)
                        .with_context(|| format!("writing {}", staging.display()))?;
                    written.fetch_add(len as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..COPY_THREADS).map(|_| scope.spawn(copy)).collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| anyhow!("a copy thread panicked"))?)
        })?;
        Ok(Converted {
            virtual_size: capacity,
            written: written.into_inner(),
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

/// The data extents of `disk`, cut into pieces of at most [`COPY_PIECE`] bytes.
fn data_pieces(disk: &dyn VirtualDisk) -> Result<Vec<(u64, usize)>> {
    let extents = disk
        .block_status(0, disk.capacity())
        .map_err(|e| anyhow!("{e}"))?;
    let mut pieces = Vec::new();
    for extent in extents.iter().filter(|e| e.kind == ExtentKind::Data) {
        let mut offset = extent.offset;
        while offset < extent.end() {
            let len = (extent.end() - offset).min(COPY_PIECE);
            pieces.push((offset, len as usize));
            offset += len;
        }
    }
    Ok(pieces)
}
