//! A disk's guest-visible bytes as a sparse raw file: zero extents become holes, data is
//! copied by a few threads, and the file is written under a temporary name and renamed at
//! the end, so a failure never leaves a file that looks complete.

use crate::{Error, Result};
use aero_plugin_api::{ExtentKind, VirtualDisk};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Pieces in which data extents are copied.
pub const COPY_PIECE: u64 = 4 * 1024 * 1024;
/// Threads copying pieces at once (reads and writes overlap).
const COPY_THREADS: usize = 4;

/// What a conversion wrote.
#[derive(Debug)]
pub struct Converted {
    /// Guest-visible bytes.
    pub virtual_size: u64,
    /// Bytes actually written (data).
    pub written: u64,
}

/// The temporary name `out` is written under: `.<name>.partial-<pid>` beside it.
pub fn staging_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes `disk` to `out` as a sparse raw file, under [`staging_path`] until complete. Like
/// `qemu-img convert` and `cp`, it leaves flushing to the page cache (run `sync` for
/// durability against power loss).
pub fn write_sparse_raw(disk: &dyn VirtualDisk, out: &Path) -> Result<Converted> {
    let staging = staging_path(out);
    let result = (|| -> Result<Converted> {
        let file = File::create(&staging)
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        let capacity = disk.capacity();
        file.set_len(capacity)
            .map_err(|e| Error::io(format!("sizing {}", staging.display()), e))?;
        let pieces = data_pieces(disk)?;
        let next = AtomicUsize::new(0);
        let written = AtomicU64::new(0);
        let copy = || -> Result<()> {
            let mut buf = vec![0u8; COPY_PIECE as usize];
            while let Some(&(offset, len)) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                let piece = &mut buf[..len];
                disk.read_at(offset, piece)?;
                if piece.iter().any(|&b| b != 0) {
                    file.write_all_at(piece, offset)
                        .map_err(|e| Error::io(format!("writing {}", staging.display()), e))?;
                    written.fetch_add(len as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..COPY_THREADS).map(|_| scope.spawn(copy)).collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .map_err(|_| Error::invalid("a copy thread panicked"))?
            })
        })?;
        Ok(Converted {
            virtual_size: capacity,
            written: written.into_inner(),
        })
    })();
    match result {
        Ok(converted) => {
            std::fs::rename(&staging, out).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", staging.display(), out.display()),
                    e,
                )
            })?;
            Ok(converted)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e)
        }
    }
}

/// The data extents of `disk`, cut into pieces of at most [`COPY_PIECE`] bytes.
pub fn data_pieces(disk: &dyn VirtualDisk) -> Result<Vec<(u64, usize)>> {
    let extents = disk.block_status(0, disk.capacity())?;
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
