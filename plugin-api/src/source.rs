//! Byte sources: where a disk image's container bytes come from.

use crate::{Error, Result};
use std::fs::File;
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
        std::fs::remove_dir_all(dir).unwrap();
    }
}
