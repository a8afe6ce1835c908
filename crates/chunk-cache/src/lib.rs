//! A content-addressed local cache of chunks, keyed by the lowercase hex sha256 of their bytes.
//!
//! - [`ChunkCache::get`] returns only bytes that hash to the digest asked for: an entry that
//!   does not (a torn or damaged file) is removed and counts as a miss.
//! - [`ChunkCache::put`] writes a temporary file in `tmp/` and renames it into place, so an
//!   entry is never seen half-written, whoever reads it.
//! - The cache holds at most `capacity` bytes: when a put goes past it, the least recently used
//!   entries (oldest modification time; a hit refreshes it) are removed until the cache is back
//!   under [`LOW_WATERMARK_PERCENT`] of it. Other processes' puts are seen at each recount of
//!   the directory, which happens at least every [`RECOUNT_PERCENT`] of the capacity put, so
//!   together they overshoot the cap by at most that much per process until the next recount.
//! - Several processes may use one directory at once: entries appear and disappear only by
//!   rename and unlink, eviction runs under an exclusive `flock` on `lock`, and every reader
//!   verifies what it reads.
//!
//! The API is synchronous; async callers use `spawn_blocking`.
//!
//! Layout: `objects/<first two hex digits>/<digest>`, `tmp/`, `lock`.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// After an eviction the cache holds at most this share of its capacity, so that eviction
/// (a scan of the directory) runs once per many puts, not at every one.
pub const LOW_WATERMARK_PERCENT: u64 = 90;

/// A process recounts the directory (and evicts if needed) after putting this share of the
/// capacity, to see what other processes added.
pub const RECOUNT_PERCENT: u64 = 10;

/// Temporary files older than this are left by killed processes and removed by [`ChunkCache::open`].
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A chunk cache in one directory.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    capacity: u64,
    /// Bytes held, as this process knows it (other processes add to it unseen; every eviction
    /// recounts).
    used: AtomicU64,
    /// Bytes this process put since it last recounted.
    since_recount: AtomicU64,
    /// Distinguishes this process's temporary files.
    next_temp: AtomicU64,
}

impl ChunkCache {
    /// The default cache directory under the user's cache directory
    /// (`$XDG_CACHE_HOME`, or `~/.cache`): `<user_cache_dir>/aero-host/chunks`.
    pub fn default_dir(user_cache_dir: &Path) -> PathBuf {
        user_cache_dir.join("aero-host").join("chunks")
    }

    /// Opens (creating it if needed) the cache in `dir`, holding at most `capacity_bytes`.
    /// Counts what it holds and removes temporary files left by killed processes.
    pub fn open(dir: impl Into<PathBuf>, capacity_bytes: u64) -> io::Result<Self> {
        let dir = dir.into();
        let cache = ChunkCache {
            capacity: capacity_bytes,
            used: AtomicU64::new(0),
            since_recount: AtomicU64::new(0),
            next_temp: AtomicU64::new(0),
            dir,
        };
        fs::create_dir_all(cache.objects_dir()).map_err(|e| cache.context("creating", e))?;
        fs::create_dir_all(cache.tmp_dir()).map_err(|e| cache.context("creating", e))?;
        cache.remove_stale_temps()?;
        let used = cache.entries()?.iter().map(|e| e.len).sum();
        cache.used.store(used, Ordering::Relaxed);
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size cap in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The chunk whose sha256 is `digest`, verified; `None` when it is not cached (or its entry
    /// was damaged, which removes it). A hit marks the entry as recently used.
    pub fn get(&self, digest: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.entry_path(digest)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(with_path("reading", &path, e)),
        };
        if sha256_hex(&bytes) != digest {
            remove_if_present(&path)?;
            self.used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(bytes.len() as u64))
                })
                .ok();
            return Ok(None);
        }
        touch(&path);
        Ok(Some(bytes))
    }

    /// Whether an entry for `digest` exists (not verified: [`get`](Self::get) verifies).
    pub fn contains(&self, digest: &str) -> bool {
        self.entry_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores `bytes` as the chunk whose sha256 is `digest` (the caller has checked it; an
    /// entry that does not match is dropped by the next `get`). Atomic: written to a temporary
    /// file and renamed into place. Evicts least recently used entries when the cache goes past
    /// its capacity; a chunk larger than the whole capacity is not stored.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.entry_path(digest)?;
        let len = bytes.len() as u64;
        if len > self.capacity {
            return Ok(());
        }
        if fs::metadata(&path).is_ok_and(|m| m.len() == len) {
            touch(&path);
            return Ok(());
        }
        let temp = self.tmp_dir().join(format!(
            "{digest}.{}.{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(bytes)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(with_path("storing", &path, e));
        }
        let used = self.used.fetch_add(len, Ordering::Relaxed) + len;
        let since_recount = self.since_recount.fetch_add(len, Ordering::Relaxed) + len;
        if used > self.capacity || since_recount >= self.capacity / 100 * RECOUNT_PERCENT {
            self.evict()?;
        }
        Ok(())
    }

    /// Total bytes of the entries now in the cache (a scan of the directory).
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.entries()?.iter().map(|e| e.len).sum())
    }

    /// Recounts the directory and, when it holds more than the capacity, removes least recently
    /// used entries until it holds at most [`LOW_WATERMARK_PERCENT`] of it; one process at a time.
    fn evict(&self) -> io::Result<()> {
        let lock_path = self.dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| with_path("opening", &lock_path, e))?;
        // SAFETY: flock on a file descriptor this function owns; released when `lock` closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(with_path("locking", &lock_path, io::Error::last_os_error()));
        }
        self.since_recount.store(0, Ordering::Relaxed);
        let mut entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        let target = self.capacity / 100 * LOW_WATERMARK_PERCENT;
        if total > self.capacity {
            entries.sort_by_key(|e| e.used_at);
            for entry in entries {
                if total <= target {
                    break;
                }
                remove_if_present(&entry.path)?;
                total -= entry.len;
            }
        }
        self.used.store(total, Ordering::Relaxed);
        Ok(())
    }

    /// Every entry: path, size, last use.
    fn entries(&self) -> io::Result<Vec<Entry>> {
        let objects = self.objects_dir();
        let mut entries = Vec::new();
        for shard in read_dir(&objects)? {
            for file in read_dir(&shard)? {
                match fs::metadata(&file) {
                    Ok(meta) if meta.is_file() => entries.push(Entry {
                        len: meta.len(),
                        used_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        path: file,
                    }),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(with_path("reading", &file, e)),
                }
            }
        }
        Ok(entries)
    }

    fn remove_stale_temps(&self) -> io::Result<()> {
        let now = SystemTime::now();
        for temp in read_dir(&self.tmp_dir())? {
            let stale = fs::metadata(&temp)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP_AGE);
            if stale {
                remove_if_present(&temp)?;
            }
        }
        Ok(())
    }

    /// Where the entry for `digest` lives; an error unless `digest` is 64 lowercase hex digits.
    fn entry_path(&self, digest: &str) -> io::Result<PathBuf> {
        let valid = digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{digest}' is not a lowercase hex sha256 digest"),
            ));
        }
        Ok(self.objects_dir().join(&digest[..2]).join(digest))
    }

    fn objects_dir(&self) -> PathBuf {
        self.dir.join("objects")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn context(&self, doing: &str, e: io::Error) -> io::Error {
        with_path(doing, &self.dir, e)
    }
}

/// One cached chunk.
struct Entry {
    path: PathBuf,
    len: u64,
    used_at: SystemTime,
}

/// The lowercase hex sha256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Marks an entry as used now. Best effort: an entry evicted meanwhile needs no mark.
fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The paths in `dir` (none when it does not exist).
fn read_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(|e| with_path("listing", dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(with_path("listing", dir, e)),
    }
}

/// Removes `path`; already gone (another process evicted it) is fine.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path("removing", path, e)),
        _ => Ok(()),
    }
}

/// `e` with what was being done and on what.
fn with_path(doing: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}
