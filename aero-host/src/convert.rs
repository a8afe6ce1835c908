//! `aero-host convert`: the guest-visible bytes as a sparse raw file or an image of any format
//! plugin that can write (AeroSparse).

use aero_plugin_api::{ExtentKind, VirtualDisk};
use aero_plugin_host::PluginSet;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Pieces in which data extents are copied.
const COPY_PIECE: u64 = 4 * 1024 * 1024;
/// Threads copying pieces at once (reads and writes overlap).
const COPY_THREADS: usize = 4;

/// The values `--to` accepts: `raw`, and every built-in format that can write.
pub fn targets() -> clap::builder::PossibleValuesParser {
    let writers: Vec<String> = PluginSet::builtin()
        .map(|set| set.writers().map(|f| f.name().to_string()).collect())
        .unwrap_or_default();
    // Parsed once per process: the few names live as long as it does.
    let names = std::iter::once("raw").chain(writers.into_iter().map(|name| &*name.leak()));
    clap::builder::PossibleValuesParser::new(names)
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
pub fn convert(
    plugins: &PluginSet,
    disk: &dyn VirtualDisk,
    out: &Path,
    target: &str,
) -> Result<Converted> {
    if target == "raw" {
        return write_sparse_raw(disk, out);
    }
    let format = plugins
        .formats()
        .require(target)
        .map_err(|e| anyhow!("{e}"))?;
    let writer = format
        .writer()
        .ok_or_else(|| anyhow!("format '{target}' cannot write images"))?;
    let summary = writer.write(disk, out).map_err(|e| anyhow!("{e}"))?;
    Ok(Converted {
        virtual_size: summary.virtual_size,
        written: summary.data_bytes,
    })
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
