//! `OUT.part` and its state file `OUT.part.state`: which chunks of which manifest are written.
//!
//! The state file is a header line `aero-pull-state v1 <identity> <size>` followed by one line
//! per written chunk index. A state file of another manifest, or none, starts the part over.
//! The state file is held under an exclusive `flock` while a pull writes: a second pull of the
//! same `OUT` is refused instead of interleaving.
//!
//! **The state never names data that is not durable.** Written chunks are not recorded at
//! once: a journal thread collects them and, every [`FLUSH_INTERVAL`] or [`FLUSH_BYTES`] of
//! data, first `fdatasync`s `OUT.part` (every chunk it is about to name was written before),
//! then appends their lines to the state file and `fdatasync`s it. A kill or a power cut at
//! any moment leaves at worst chunks written but not listed (fetched again) or a torn last
//! line (ignored, and cut off when the part is resumed); it never leaves a listed chunk whose bytes were lost.
//!
//! When done, `OUT.part` is flushed to disk, marked with the manifest's identity (the
//! `user.aero-pull.manifest` extended attribute, where the file system keeps them) and renamed
//! to `OUT`; a later pull of the same manifest finds `OUT` complete and does nothing.

use crate::{Error, Result};
use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest time written chunks wait before the state file names them.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The most data written chunks hold before the state file names them.
pub const FLUSH_BYTES: u64 = 256 << 20;

/// The extended attribute naming the manifest a finished `OUT` holds.
const IDENTITY_XATTR: &str = "user.aero-pull.manifest";
/// The state file's first word.
const STATE_MAGIC: &str = "aero-pull-state v1";

/// `OUT.part`.
pub fn part_path(out: &Path) -> PathBuf {
    with_suffix(out, ".part")
}

/// `OUT.part.state`.
pub fn state_path(out: &Path) -> PathBuf {
    with_suffix(out, ".part.state")
}

/// `path` with `suffix` appended to its name: the file names kept beside an output.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether `out` is a finished pull of the manifest `identity`, `size` bytes long.
pub fn is_complete(out: &Path, identity: &str, size: u64) -> bool {
    std::fs::metadata(out).is_ok_and(|m| m.is_file() && m.len() == size)
        && get_xattr(out, IDENTITY_XATTR).as_deref() == Some(identity.as_bytes())
}

/// The chunks a previous, interrupted pull of `identity` wrote to `OUT.part` (none when there
/// is no part of that manifest).
pub fn written_chunks(out: &Path, identity: &str, size: u64) -> HashSet<u64> {
    let Ok(mut state) = File::open(state_path(out)) else {
        return HashSet::new();
    };
    if !std::fs::metadata(part_path(out)).is_ok_and(|m| m.len() == size) {
        return HashSet::new();
    }
    let mut text = String::new();
    if state.read_to_string(&mut text).is_err() {
        return HashSet::new();
    }
    parse_state(&text, identity, size).unwrap_or_default()
}

/// The chunk indices listed under a header that matches; `None` for another manifest.
fn parse_state(text: &str, identity: &str, size: u64) -> Option<HashSet<u64>> {
    let mut lines = text.split_inclusive('\n');
    let header = lines.next()?;
    if header != header_line(identity, size) {
        return None;
    }
    // A line without its newline was torn by a kill: ignored.
    Some(
        lines
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(|l| l.parse().ok())
            .collect(),
    )
}

fn header_line(identity: &str, size: u64) -> String {
    format!("{STATE_MAGIC} {identity} {size}\n")
}

/// `OUT.part` being written, with its state file.
pub struct Part {
    out: PathBuf,
    path: PathBuf,
    file: Arc<File>,
    journal: Arc<Journal>,
    flusher: Option<JoinHandle<()>>,
    identity: String,
}

/// Chunks written but not yet named by the state file.
struct Journal {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    indices: Vec<u64>,
    bytes: u64,
    stop: bool,
    /// The first failure of the journal thread, reported by the next write.
    error: Option<String>,
}

impl Journal {
    /// Runs until stopped: waits for [`FLUSH_INTERVAL`] or [`FLUSH_BYTES`], then makes the
    /// part durable and names the chunks in the state file, in that order.
    fn run(&self, data: &File, mut state: File, state_path: &Path) {
        loop {
            let (batch, stop) = {
                let mut pending = self.pending.lock().expect("journal poisoned");
                if !pending.stop && pending.bytes < FLUSH_BYTES {
                    pending = self
                        .wake
                        .wait_timeout(pending, FLUSH_INTERVAL)
                        .expect("journal poisoned")
                        .0;
                }
                pending.bytes = 0;
                (std::mem::take(&mut pending.indices), pending.stop)
            };
            if !batch.is_empty() {
                let lines: String = batch.iter().map(|i| format!("{i}\n")).collect();
                let written = data
                    .sync_data()
                    .and_then(|_| state.write_all(lines.as_bytes()))
                    .and_then(|_| state.sync_data());
                if let Err(e) = written {
                    let mut pending = self.pending.lock().expect("journal poisoned");
                    pending.error.get_or_insert_with(|| {
                        format!("recording written chunks in {}: {e}", state_path.display())
                    });
                    return;
                }
            }
            if stop {
                return;
            }
        }
    }
}

impl Part {
    /// Opens `OUT.part` for the manifest `identity` of `size` bytes under the state file's
    /// lock, resuming what its state lists or starting over. Returns the part and the chunks
    /// already written.
    pub fn open(out: &Path, identity: &str, size: u64) -> Result<(Part, HashSet<u64>)> {
        let path = part_path(out);
        let state_path = state_path(out);
        let mut state = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&state_path)
            .map_err(|e| Error::io(format!("opening {}", state_path.display()), e))?;
        // SAFETY: flock on a descriptor we own; released when `state` is closed.
        if unsafe { libc::flock(state.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Invalid(format!(
                "another pull is writing {} (its state file {} is locked)",
                path.display(),
                state_path.display()
            )));
        }
        let (written, complete) = {
            let mut text = String::new();
            let _ = state.read_to_string(&mut text);
            let part_ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == size);
            // The length up to the last whole line, when a torn line follows it.
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            let complete = (whole < text.len()).then_some(whole as u64);
            (
                parse_state(&text, identity, size).filter(|_| part_ok),
                complete,
            )
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(written.is_none())
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let written = match written {
            Some(written) => {
                // A torn last line is cut off: a line appended to it would name another chunk.
                if let Some(len) = complete {
                    state
                        .set_len(len)
                        .map_err(|e| Error::io(format!("writing {}", state_path.display()), e))?;
                }
                written
            }
            None => {
                file.set_len(size).map_err(|e| {
                    Error::io(format!("sizing {} to {size} bytes", path.display()), e)
                })?;
                state
                    .set_len(0)
                    .and_then(|_| state.write_all(header_line(identity, size).as_bytes()))
                    .map_err(|e| Error::io(format!("writing {}", state_path.display()), e))?;
                HashSet::new()
            }
        };
        let file = Arc::new(file);
        let journal = Arc::new(Journal {
            pending: Mutex::default(),
            wake: Condvar::new(),
        });
        let flusher = {
            let (journal, file) = (Arc::clone(&journal), Arc::clone(&file));
            std::thread::Builder::new()
                .name("aero-pull-journal".into())
                .spawn(move || journal.run(&file, state, &state_path))
                .map_err(|e| Error::io("starting the journal thread", e))?
        };
        Ok((
            Part {
                out: out.to_path_buf(),
                path,
                file,
                journal,
                flusher: Some(flusher),
                identity: identity.to_string(),
            },
            written,
        ))
    }

    /// `OUT.part`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes chunk `index` at `offset` (an all-zero chunk is left a hole); the state file
    /// names it once it is durable.
    pub fn write_chunk(&self, index: u64, offset: u64, bytes: &[u8]) -> Result<()> {
        if bytes.iter().any(|&b| b != 0) {
            self.file
                .write_all_at(bytes, offset)
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        }
        let mut pending = self.journal.pending.lock().expect("journal poisoned");
        if let Some(e) = &pending.error {
            return Err(Error::Invalid(e.clone()));
        }
        pending.indices.push(index);
        pending.bytes += bytes.len() as u64;
        if pending.bytes >= FLUSH_BYTES {
            self.journal.wake.notify_one();
        }
        Ok(())
    }

    /// The part file, for reading back what was written.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Stops the journal thread; its first failure, if any. With `last_batch`, the chunks not
    /// yet named are made durable and named first; without, they are dropped (the state file
    /// is about to go, so syncing for it would be wasted).
    fn stop_journal(&mut self, last_batch: bool) -> Result<()> {
        let Some(flusher) = self.flusher.take() else {
            return Ok(());
        };
        {
            let mut pending = self.journal.pending.lock().expect("journal poisoned");
            if !last_batch {
                pending.indices.clear();
            }
            pending.stop = true;
        }
        self.journal.wake.notify_one();
        let _ = flusher.join();
        match self
            .journal
            .pending
            .lock()
            .expect("journal poisoned")
            .error
            .take()
        {
            Some(e) => Err(Error::Invalid(e)),
            None => Ok(()),
        }
    }

    /// Flushes the part to disk, marks it with the manifest identity and renames it to `OUT`;
    /// the state file goes.
    pub fn finish(mut self) -> Result<()> {
        // The whole part is synced below: the last batch needs no sync of its own.
        self.stop_journal(false)?;
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("flushing {}", self.path.display()), e))?;
        set_xattr(&self.path, IDENTITY_XATTR, self.identity.as_bytes());
        std::fs::rename(&self.path, &self.out).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", self.path.display(), self.out.display()),
                e,
            )
        })?;
        let _ = std::fs::remove_file(state_path(&self.out));
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// Removes the part and its state: nothing in it can be resumed.
    pub fn discard(mut self) {
        let _ = self.stop_journal(false);
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(state_path(&self.out));
    }
}

impl Drop for Part {
    /// A pull that stops early still records the chunks it wrote (after a last flush).
    fn drop(&mut self) {
        let _ = self.stop_journal(true);
    }
}

fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

/// Sets an extended attribute; best effort (some file systems keep none).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (Some(p), Ok(n)) = (c_path(path), CString::new(name)) else {
        return;
    };
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        );
    }
}

/// An extended attribute's value, when set.
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (c_path(path)?, CString::new(name).ok()?);
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_and_another_manifest_are_ignored() {
        let text = format!("{}3\n7\n1", header_line("abc", 100));
        assert_eq!(parse_state(&text, "abc", 100), Some(HashSet::from([3, 7])));
        assert_eq!(parse_state(&text, "abd", 100), None);
        assert_eq!(parse_state(&text, "abc", 101), None);
        assert_eq!(parse_state("", "abc", 100), None);
    }

    #[test]
    fn a_part_resumes_and_a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("disk.raw");
        let (part, written) = Part::open(&out, "id1", 8192).unwrap();
        assert!(written.is_empty());
        let err = Part::open(&out, "id1", 8192).err().unwrap().to_string();
        assert!(err.contains("another pull is writing"), "{err}");
        part.write_chunk(1, 4096, &[7u8; 4096]).unwrap();
        drop(part);
        assert_eq!(written_chunks(&out, "id1", 8192), HashSet::from([1]));
        let (part, written) = Part::open(&out, "id1", 8192).unwrap();
        assert_eq!(written, HashSet::from([1]));
        part.write_chunk(0, 0, &[0u8; 4096]).unwrap();
        part.finish().unwrap();
        assert!(!part_path(&out).exists() && !state_path(&out).exists());
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..4096], &[0u8; 4096][..]);
        assert_eq!(&bytes[4096..], &[7u8; 4096][..]);
        // Another manifest starts over.
        let (_, written) = Part::open(&out, "id2", 8192).unwrap();
        assert!(written.is_empty());
    }

    #[test]
    fn a_resumed_part_never_extends_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("disk.raw");
        let (part, _) = Part::open(&out, "id1", 4 * 4096).unwrap();
        part.write_chunk(1, 4096, &[7u8; 4096]).unwrap();
        drop(part);
        // A line torn by a crash: "2" of "2\n".
        let mut state = OpenOptions::new()
            .append(true)
            .open(state_path(&out))
            .unwrap();
        state.write_all(b"2").unwrap();
        drop(state);
        let (part, written) = Part::open(&out, "id1", 4 * 4096).unwrap();
        assert_eq!(written, HashSet::from([1]));
        part.write_chunk(3, 3 * 4096, &[9u8; 4096]).unwrap();
        drop(part);
        // Not 23.
        assert_eq!(written_chunks(&out, "id1", 4 * 4096), HashSet::from([1, 3]));
    }
}
