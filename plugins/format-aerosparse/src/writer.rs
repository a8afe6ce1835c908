//! Writing AeroSparse images from any virtual disk (`convert --to aerosparse`).

use crate::header::{Header, HEADER_SIZE};
use aero_plugin_api::{Error, ExtentKind, Result, VirtualDisk};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How many bytes of guest data are read from the source disk at once (at least one block).
const BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// What [`write_aerosparse`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// Guest-visible size in bytes.
    pub capacity: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Logical blocks in the image.
    pub total_blocks: u64,
    /// Blocks stored (the rest read as zeros).
    pub allocated_blocks: u64,
    /// Size of the written file in bytes.
    pub file_size: u64,
}

/// Writes an AeroSparse v1 image of `disk` to `out` in blocks of `block_size` bytes.
///
/// Blocks that are known zeros (by block status) or read as all zeros stay unallocated. The image
/// is written to a temporary file beside `out` and renamed over it only when complete, so a
/// failure leaves no file that looks finished.
pub fn write_aerosparse(
    disk: &dyn VirtualDisk,
    out: &Path,
    block_size: u32,
) -> Result<WriteSummary> {
    let display = out.display();
    let capacity = disk.capacity();
    let mut header = Header::new(block_size, capacity)
        .map_err(|what| Error::invalid_input(format!("writing {display} as aerosparse: {what}")))?;
    let temp = TempFile::create(out)?;
    let io = |what: &str, e: std::io::Error| {
        Error::io(format!("writing {}: {what}: {e}", temp.path.display()))
    };
    let mut table = vec![0u64; header.table_entries as usize];
    let block = u64::from(block_size);
    let blocks_per_batch = (BATCH_BYTES / block).max(1);
    let mut buf = Vec::new();
    let mut first_block = 0;
    while first_block < header.table_entries {
        let blocks = blocks_per_batch.min(header.table_entries - first_block);
        let start = first_block * block;
        let len = (blocks * block).min(capacity - start);
        let zero = known_zero_blocks(disk, start, len, block)?;
        // Read each run of blocks that may hold data with one read.
        let mut i = 0;
        while i < blocks {
            if zero[i as usize] {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < blocks && !zero[j as usize] {
                j += 1;
            }
            let run_start = start + i * block;
            let run_len = ((j - i) * block).min(capacity - run_start);
            buf.clear();
            buf.resize((run_len.div_ceil(block) * block) as usize, 0);
            disk.read_at(run_start, &mut buf[..run_len as usize])?;
            for (k, data) in buf.chunks_exact(block as usize).enumerate() {
                if data.iter().all(|&b| b == 0) {
                    continue;
                }
                let offset = header.data_end();
                temp.file
                    .write_all_at(data, offset)
                    .map_err(|e| io("writing a data block", e))?;
                table[(first_block + i) as usize + k] = offset;
                header.allocated_blocks += 1;
            }
            i = j;
        }
        first_block += blocks;
    }
    let table_bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
    temp.file
        .write_all_at(&table_bytes, HEADER_SIZE)
        .map_err(|e| io("writing the allocation table", e))?;
    temp.file
        .write_all_at(&header.encode(), 0)
        .map_err(|e| io("writing the header", e))?;
    let file_size = header.data_end();
    temp.file
        .set_len(file_size)
        .map_err(|e| io("setting the file length", e))?;
    temp.file.sync_all().map_err(|e| io("syncing", e))?;
    temp.persist(out)?;
    Ok(WriteSummary {
        capacity,
        block_size,
        total_blocks: header.table_entries,
        allocated_blocks: header.allocated_blocks,
        file_size,
    })
}

/// For each block of `[start, start + len)`, whether block status says it reads as zeros.
fn known_zero_blocks(
    disk: &dyn VirtualDisk,
    start: u64,
    len: u64,
    block: u64,
) -> Result<Vec<bool>> {
    let blocks = len.div_ceil(block) as usize;
    let mut zero = vec![true; blocks];
    for extent in disk.block_status(start, len)? {
        if extent.kind == ExtentKind::Data && extent.length > 0 {
            let first = ((extent.offset - start) / block) as usize;
            let last = ((extent.end() - 1 - start) / block) as usize;
            zero[first..=last.min(blocks - 1)].fill(false);
        }
    }
    Ok(zero)
}

/// A file beside the destination that is removed unless it is persisted.
struct TempFile {
    file: File,
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(out: &Path) -> Result<TempFile> {
        let file_name = out
            .file_name()
            .ok_or_else(|| Error::invalid_input(format!("{} is not a file path", out.display())))?;
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.tmp", std::process::id()));
        let path = out.with_file_name(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}: {e}", path.display())))?;
        Ok(TempFile {
            file,
            path,
            persisted: false,
        })
    }

    fn persist(mut self, out: &Path) -> Result<()> {
        std::fs::rename(&self.path, out).map_err(|e| {
            Error::io(format!(
                "renaming {} to {}: {e}",
                self.path.display(),
                out.display()
            ))
        })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
