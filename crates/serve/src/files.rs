//! Reading objects that are local files (the `fs` storage) without an open per request: a
//! bounded cache of open files, read with positional reads (`pread`).
//!
//! - **Keyed by** object key and the content tag of what is served (as the piece cache), so a
//!   replaced object is opened anew once its stat shows the change.
//! - **How many:** at most `open_files` (default 256) descriptors; quick_cache evicts cold ones,
//!   and an evicted file is closed when its last read ends.
//! - **Where reads run:** a read of at most [`INLINE_READ`] bytes runs on the request's own
//!   thread (from the page cache it takes microseconds, less than handing it to a blocking
//!   thread); larger reads run on a blocking thread.

use aero_chunked::read::Piece;
use aero_plugin_api::backend::LocalFiles;
use axum::body::Bytes;
use quick_cache::sync::Cache;
use std::fs::File;
use std::io::{Error, ErrorKind};
use std::sync::Arc;

/// Reads up to this many bytes run inline; larger ones on a blocking thread.
pub const INLINE_READ: u64 = 64 * 1024;

/// Open local files, read at any offset.
pub struct OpenFiles {
    local: Arc<dyn LocalFiles>,
    open: Cache<(String, Arc<str>), Arc<File>>,
}

impl OpenFiles {
    /// Reads through `local`, keeping at most `capacity` files open.
    pub fn new(local: Arc<dyn LocalFiles>, capacity: usize) -> Self {
        OpenFiles {
            local,
            open: Cache::new(capacity.max(1)),
        }
    }

    /// Files open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }

    /// The open file of `piece`'s object, opening it when needed.
    fn file(&self, piece: &Piece) -> std::io::Result<Arc<File>> {
        let key = (piece.key.clone(), Arc::clone(&piece.tag));
        if let Some(file) = self.open.get(&key) {
            return Ok(file);
        }
        let path = self
            .local
            .path(&piece.key)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        let file = Arc::new(File::open(path)?);
        self.open.insert(key, Arc::clone(&file));
        Ok(file)
    }

    /// Reads `piece`, failing when the object is shorter than expected.
    pub async fn read(&self, piece: &Piece) -> std::io::Result<Bytes> {
        let file = self.file(piece)?;
        let (start, len) = (piece.start, piece.end - piece.start);
        let bytes = if len <= INLINE_READ {
            read_exact_at(&file, start, len)?
        } else {
            tokio::task::spawn_blocking(move || read_exact_at(&file, start, len))
                .await
                .map_err(Error::other)??
        };
        Ok(bytes)
    }
}

/// `len` bytes of `file` at `offset`; `UnexpectedEof` naming what is missing when shorter.
/// The buffer is not zeroed first: `pread` fills it, and only what it filled is kept.
fn read_exact_at(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let len = len as usize;
    let mut buf = Vec::<u8>::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        // What is still missing, never more: `with_capacity` may give more room than asked.
        let want = len - done;
        let spare = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: a valid fd, and a pointer to `want` writable bytes owned by `buf`; pread
        // writes at most `want` bytes there and nothing else.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                want,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "the object is shorter than expected ({done} of {len} bytes at {offset})"
                    ),
                ))
            }
            // SAFETY: pread initialised the `n` (≤ `want`) bytes after the `done` already
            // filled, so `done + n` ≤ `len` ≤ the capacity.
            n if n > 0 => unsafe { buf.set_len(done + n as usize) },
            _ => {
                let e = Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::backend::{build_storage, Settings};

    fn piece(key: &str, tag: &str, start: u64, end: u64) -> Piece {
        Piece {
            key: key.into(),
            start,
            end,
            tag: Arc::from(tag),
        }
    }

    #[tokio::test]
    async fn reads_ranges_keeps_files_open_within_the_bound_and_sees_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new();
        settings.insert("root".into(), dir.path().to_str().unwrap().into());
        let storage = build_storage(&backend_fs::FsBackend, &settings).unwrap();
        let files = OpenFiles::new(storage.local_files.clone().unwrap(), 4);
        let bytes: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("o{i}")), &bytes).unwrap();
        }
        // Small (inline) and large (blocking thread) reads.
        let small = files.read(&piece("o0", "t", 10, 20)).await.unwrap();
        assert_eq!(&small[..], &bytes[10..20]);
        let large = files.read(&piece("o0", "t", 1, 150_001)).await.unwrap();
        assert_eq!(&large[..], &bytes[1..150_001]);
        // Short objects and missing ones are errors of their kind.
        let err = files.read(&piece("o0", "t", 199_990, 200_010)).await;
        assert_eq!(err.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        let err = files.read(&piece("none", "t", 0, 1)).await;
        assert_eq!(err.unwrap_err().kind(), ErrorKind::NotFound);
        let err = files.read(&piece("../escape", "t", 0, 1)).await;
        assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidInput);
        // Never more open files than the bound.
        for i in 0..10 {
            files
                .read(&piece(&format!("o{i}"), "t", 0, 4))
                .await
                .unwrap();
            assert!(files.len() <= 4, "{} open", files.len());
        }
        // A replaced object under a new tag is read anew.
        std::fs::remove_file(dir.path().join("o9")).unwrap();
        std::fs::write(dir.path().join("o9"), b"new content").unwrap();
        let fresh = files.read(&piece("o9", "t2", 0, 3)).await.unwrap();
        assert_eq!(&fresh[..], b"new");
    }
}
