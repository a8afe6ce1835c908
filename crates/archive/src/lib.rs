//! Extracting a `.tar.gz` archive into a directory, safely and atomically.
//!
//! [`extract`] unpacks into `DIR.part`, checks the result, writes the marker
//! `DIR/.aero-archive.sha256` (the archive's sha256), makes it durable and renames it to
//! `DIR`; a stale extraction (another sha256 in its marker) is swapped out in one rename and
//! removed. An up-to-date extraction is left as it is, and a directory without a marker is
//! never replaced. Every entry is checked before anything is written for it ([`paths`]):
//! - paths must be relative and never contain `..`;
//! - symbolic links must resolve inside the directory (checked again once the tree is
//!   complete, following links within it), hard links must name a regular file inside it;
//! - device files, FIFOs and other special entries are refused;
//! - entries are written without ever following a link already extracted;
//! - the archive must stay within [`Limits`] (bytes expanded, entries).
//!
//! A refused archive leaves nothing under `DIR` (and `DIR.part` is removed).

mod paths;
mod unpack;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The marker file inside an extraction: the archive's sha256, hex, and a newline.
pub const MARKER: &str = ".aero-archive.sha256";

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry breaks a rule; nothing was extracted.
    #[error("{archive}: entry '{entry}' refused: {problem}")]
    Refused {
        /// The archive file.
        archive: String,
        /// The entry's path as written in the archive.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The archive cannot be extracted as a whole (not gzip, not tar, too large, …).
    #[error("{archive}: {problem}")]
    Invalid {
        /// The archive file.
        archive: String,
        /// What is wrong.
        problem: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// The operation and the path.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// How large an archive may expand.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of file data written (the sum of the regular files' sizes).
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// The default of [`Limits::max_bytes`]: 64 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// The default of [`Limits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// What [`extract`] did.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// `DIR` already held this archive: nothing was done.
    pub up_to_date: bool,
    /// A stale extraction was replaced.
    pub replaced: bool,
    /// Entries extracted.
    pub entries: u64,
    /// Bytes of file data extracted.
    pub bytes: u64,
}

/// Whether `dir` is a complete extraction of the archive whose sha256 is `sha256`.
pub fn is_extracted(dir: &Path, sha256: &str) -> bool {
    marker_of(dir).is_some_and(|m| m.eq_ignore_ascii_case(sha256))
}

/// The sha256 the marker of `dir` holds, when `dir` is an extraction.
fn marker_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    Some(text.trim().to_string())
}

/// `DIR.part`, where an extraction is written before it is renamed.
pub fn part_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Extracts the gzip-compressed tar `archive` (whose sha256 is `sha256`, already checked by
/// the caller) into `dir`, as the crate documentation says. Extractions into one parent
/// directory take turns (an exclusive `flock` on it).
pub fn extract(archive: &Path, sha256: &str, dir: &Path, limits: &Limits) -> Result<Extracted> {
    let parent = match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let lock =
        File::open(&parent).map_err(|e| Error::io(format!("opening {}", parent.display()), e))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::io(format!("locking {}", parent.display()), e));
    }
    let existing = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => match marker_of(dir) {
            Some(m) if m.eq_ignore_ascii_case(sha256) => {
                return Ok(Extracted {
                    up_to_date: true,
                    ..Extracted::default()
                })
            }
            Some(_) => true,
            None => {
                return Err(Error::Invalid {
                    archive: archive.display().to_string(),
                    problem: format!(
                        "{} exists and is not an extraction (it has no {MARKER}); \
                         remove it or extract elsewhere",
                        dir.display()
                    ),
                })
            }
        },
        Ok(_) => {
            return Err(Error::Invalid {
                archive: archive.display().to_string(),
                problem: format!("{} exists and is not a directory", dir.display()),
            })
        }
        Err(_) => false,
    };
    let part = part_path(dir);
    remove_tree(&part)?;
    let result = unpack::unpack(archive, &part, limits).and_then(|mut extracted| {
        let marker = part.join(MARKER);
        std::fs::write(&marker, format!("{}\n", sha256.to_ascii_lowercase()))
            .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
        sync_file_system(&part)?;
        if existing {
            exchange(&part, dir)?;
            extracted.replaced = true;
        } else {
            std::fs::rename(&part, dir).map_err(|e| {
                Error::io(
                    format!("renaming {} to {}", part.display(), dir.display()),
                    e,
                )
            })?;
        }
        Ok(extracted)
    });
    // After an exchange `part` holds the stale extraction; after a failure, the partial one.
    remove_tree(&part)?;
    if result.is_ok() {
        let _ = lock.sync_all();
    }
    result
}

/// Removes the tree at `path` when it exists.
fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Makes everything written under `path` durable (one `syncfs` of its file system).
fn sync_file_system(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::io(format!("flushing {}", path.display()), e));
    }
    Ok(())
}

/// Swaps the directories `a` and `b` in one atomic rename.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let context = || format!("exchanging {} and {}", a.display(), b.display());
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| Error::io(context(), std::io::Error::other(e)))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: valid NUL-terminated paths relative to the working directory.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done != 0 {
        return Err(Error::io(context(), std::io::Error::last_os_error()));
    }
    Ok(())
}
