//! Byte sources: where a disk image's container bytes come from.

use crate::{Error, Extent, ExtentKind, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Random-access, thread-safe read-only bytes (a local file, a buffer, a backend object).
///
/// `read_at` takes `&self` and has no shared cursor, so many threads may read at once.
pub trait ByteSource: Send + Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// A name for messages (a path or a key).
    fn name(&self) -> &str;

    /// The local path, when the source is a local file (used to resolve backing files).
    fn local_path(&self) -> Option<&Path> {
        None
    }

    /// Where `[offset, offset + len)` holds data and where it holds holes that read as zeros,
    /// when the source knows (a sparse local file); `None` when it does not.
    fn block_status(&self, _offset: u64, _len: u64) -> Option<Vec<Extent>> {
        None
    }
}

/// Returns an error unless `[offset, offset+len)` lies within `size`.
pub(crate) fn check_range(name: &str, offset: u64, len: usize, size: u64) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::corrupt(format!(
            "{name}: read of {len} bytes at offset {offset} lies past the end of the file ({size} bytes)"
        ))),
    }
}

/// A local file read with positional reads (`pread`).
pub struct FileSource {
    file: File,
    path: PathBuf,
    name: String,
    len: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| Error::io(format!("opening {name}: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {name}: {e}")))?;
        if !meta.is_file() {
            return Err(Error::invalid_input(format!(
                "{name} is not a regular file"
            )));
        }
        Ok(FileSource {
            file,
            path: path.to_path_buf(),
            name,
            len: meta.len(),
        })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(&self.name, offset, buf.len(), self.len)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(format!("reading {} at offset {offset}: {e}", self.name)))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn block_status(&self, offset: u64, len: u64) -> Option<Vec<Extent>> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len)?;
        let mut extents = Vec::new();
        let mut push = |start: u64, stop: u64, kind| {
            if stop > start {
                extents.push(Extent {
                    offset: start,
                    length: stop - start,
                    kind,
                });
            }
        };
        let mut pos = offset;
        while pos < end {
            // The return values are used, not the shared file position, so this is thread-safe.
            let data = match self.seek(pos, libc::SEEK_DATA) {
                Ok(d) => d.min(end),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => end,
                Err(_) => return None,
            };
            push(pos, data, ExtentKind::Zero);
            if data >= end {
                break;
            }
            let hole = self.seek(data, libc::SEEK_HOLE).ok()?.min(end);
            push(data, hole, ExtentKind::Data);
            pos = hole;
        }
        Some(extents)
    }
}

impl FileSource {
    /// `lseek(2)` with `SEEK_DATA` or `SEEK_HOLE`.
    fn seek(&self, pos: u64, whence: libc::c_int) -> std::io::Result<u64> {
        let pos = libc::off_t::try_from(pos).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: lseek on a file descriptor this struct owns; no memory is passed.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), pos, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    }
}

/// Bytes held in memory.
pub struct MemorySource {
    bytes: Vec<u8>,
    name: String,
}

impl MemorySource {
    /// Wraps `bytes`, called `name` in messages.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        MemorySource {
            bytes,
            name: name.into(),
        }
    }
}

impl ByteSource for MemorySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(&self.name, offset, buf.len(), self.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_source_reads_and_refuses_past_end() {
        let src = MemorySource::new("m", (0u8..10).collect());
        let mut buf = [0u8; 3];
        src.read_at(7, &mut buf).unwrap();
        assert_eq!(buf, [7, 8, 9]);
        assert!(src.read_at(8, &mut buf).is_err());
        assert!(src.read_at(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn file_source_reads_positionally() {
        let dir = std::env::temp_dir().join(format!("aero-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        std::fs::write(&path, b"hello world").unwrap();
        let src = FileSource::open(&path).unwrap();
        let mut buf = [0u8; 5];
        src.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert!(src.read_at(7, &mut buf).is_err());
        assert!(FileSource::open(&dir).is_err());
        let sparse = dir.join("sparse.bin");
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(8 << 20).unwrap();
        file.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
        drop(file);
        let src = FileSource::open(&sparse).unwrap();
        let extents = src.block_status(0, 8 << 20).unwrap();
        assert_eq!(extents.first().unwrap().offset, 0);
        assert_eq!(extents.last().unwrap().end(), 8 << 20);
        assert!(extents.windows(2).all(|w| w[0].end() == w[1].offset));
        let data: Vec<_> = extents
            .iter()
            .filter(|e| e.kind == ExtentKind::Data)
            .collect();
        assert!(
            !data.is_empty()
                && data
                    .iter()
                    .all(|e| e.offset <= 4 << 20 && e.end() >= (4 << 20) + 4096)
        );
        assert!(src.block_status(0, (8 << 20) + 1).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
