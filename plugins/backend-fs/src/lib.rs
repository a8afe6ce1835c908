//! The `fs` storage backend: objects are files under a root directory.
//!
//! Files carry no HTTP metadata; readers (verify, serve) derive it from the object's role.
//! An object's sha256 is kept as the user xattr `user.sha256` where the file system allows it.
//!
//! Writes are staged in [`STAGING_DIR`] and renamed into place, without a sync each; the
//! [`Durability`] barrier makes a set of objects durable at once (see `docs/architecture.md`).
//! All-zero objects are hard links to one sparse file per size: no data blocks, no inode each.
//! Copies ([`ObjectCopies`]) are hard links too: the copy shares the source's bytes and its
//! `user.sha256` (opendal's own `fs` copy would copy the bytes).

use aero_plugin_api::backend::{
    async_trait, opendal, Durability, LocalFiles, ObjectCopies, ObjectMeta, Settings, Storage,
    StorageBackend, ZeroObjects, DIGEST_METADATA_KEY,
};
use aero_plugin_api::{register_backend, Error, Result};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The `fs` backend plugin. Settings: `root` (a directory, created when missing).
#[derive(Default)]
pub struct FsBackend;

register_backend!(FsBackend);

/// Name of the directory under the root where objects are written before being renamed
/// into place, so a crash never leaves a half-written object under its final name.
pub const STAGING_DIR: &str = ".aero-staging";

/// Files and directories synced at once by the barrier (fsync waits on the device, not the
/// CPU, so this is more than the cores).
const SYNC_THREADS: usize = 8;

impl StorageBackend for FsBackend {
    fn name(&self) -> &str {
        "fs"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn keys(&self) -> &[&str] {
        &["root"]
    }

    fn build(&self, settings: &Settings) -> Result<Storage> {
        let root = settings
            .get("root")
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| Error::invalid_input("storage type 'fs' needs a 'root' directory"))?;
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating storage root {root}: {e}")))?;
        let root = Path::new(root)
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving storage root {root}: {e}")))?;
        let root_str = root.to_string_lossy().to_string();
        let staging = root.join(STAGING_DIR);
        let builder = opendal::services::Fs::default()
            .root(&root_str)
            .atomic_write_dir(&staging.to_string_lossy());
        let operator = opendal::Operator::new(builder)
            .map_err(|e| Error::io(format!("opening storage root {root_str}: {e}")))?;
        let files = Arc::new(Files {
            root,
            staging,
            zero_templates: Mutex::default(),
        });
        Ok(Storage {
            operator,
            description: format!("fs:{root_str}"),
            zero_objects: Some(Arc::clone(&files) as Arc<dyn ZeroObjects>),
            copies: Some(Arc::clone(&files) as Arc<dyn ObjectCopies>),
            local_files: Some(Arc::clone(&files) as Arc<dyn LocalFiles>),
            durability: Some(files),
        })
    }
}

/// Objects as files, written without a sync each and made durable by [`Durability::sync`].
struct Files {
    root: PathBuf,
    staging: PathBuf,
    /// Per size, a zero object the next zero objects of that size are linked to.
    zero_templates: Mutex<HashMap<u64, PathBuf>>,
}

impl LocalFiles for Files {
    /// The path of `key`, refusing keys that would leave the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::invalid_input(format!("invalid object key '{key}'")));
        }
        Ok(self.root.join(key))
    }
}

impl Files {
    /// Links `target` to the inode at `source` through the staging directory, when that inode
    /// passes `check`; `false` (and nothing changed) when the source is missing, fails the
    /// check or cannot take another link.
    fn link(
        &self,
        source: &Path,
        target: &Path,
        check: impl FnOnce(&std::fs::Metadata) -> bool,
    ) -> std::io::Result<bool> {
        let tmp = staging_path(&self.staging);
        match std::fs::hard_link(source, &tmp) {
            Ok(()) => {}
            // EMLINK: the file system's link limit (65,000 on ext4) was reached.
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::EMLINK) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
        // The inode just linked is what gets published: check it, not the source's name.
        let meta = std::fs::symlink_metadata(&tmp)?;
        if !meta.is_file() || !check(&meta) {
            std::fs::remove_file(&tmp)?;
            return Ok(false);
        }
        rename_into_place(&tmp, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(true)
    }

    /// Links a new name for the zero object `template` to `target`; `false` (and nothing
    /// changed) when the template cannot take another link or is no longer a zero object of
    /// `size` bytes.
    fn link_zero(&self, template: &Path, target: &Path, size: u64) -> std::io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        self.link(template, target, |meta| {
            meta.len() == size && meta.blocks() == 0
        })
    }
}

#[async_trait]
impl ZeroObjects for Files {
    async fn write_zero(
        &self,
        _operator: &opendal::Operator,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
    ) -> Result<()> {
        let target = self.path(key)?;
        // A few metadata syscalls: cheap enough to run on the async thread.
        let mut templates = self.zero_templates.lock().expect("zero templates poisoned");
        if let Some(template) = templates.get(&size) {
            match self.link_zero(template, &target, size) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(Error::io(format!("writing zero object {key}: {e}"))),
            }
        }
        stage(&self.staging, &target, |file| {
            file.set_len(size)?;
            set_digest(file, meta)
        })?;
        templates.insert(size, target);
        Ok(())
    }
}

#[async_trait]
impl ObjectCopies for Files {
    async fn copy(
        &self,
        _operator: &opendal::Operator,
        from: &str,
        to: &str,
        size: u64,
    ) -> Result<bool> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        // A few metadata syscalls: cheap enough to run on the async thread.
        self.link(&source, &target, |meta| meta.len() == size)
            .map_err(|e| Error::io(format!("linking {from} to {to}: {e}")))
    }
}

#[async_trait]
impl Durability for Files {
    async fn write(&self, key: &str, bytes: opendal::Buffer, meta: &ObjectMeta) -> Result<()> {
        let target = self.path(key)?;
        let staging = self.staging.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            stage(&staging, &target, |mut file| {
                for piece in bytes {
                    file.write_all(&piece)?;
                }
                set_digest(file, &meta)?;
                start_writeback(file);
                Ok(())
            })
        })
        .await
        .map_err(|e| Error::io(format!("writing {key}: {e}")))?
    }

    async fn sync(&self, keys: &[String]) -> Result<()> {
        let mut files = Vec::with_capacity(keys.len());
        let mut dirs = HashSet::new();
        for key in keys {
            let path = self.path(key)?;
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(&self.root)) {
                if !dirs.insert(d.to_path_buf()) {
                    break;
                }
                dir = d.parent();
            }
            files.push(path);
        }
        files.extend(dirs);
        tokio::task::spawn_blocking(move || sync_all(&files))
            .await
            .map_err(|e| Error::io(format!("syncing objects: {e}")))?
    }
}

/// fsyncs every path (files and directories) on a few threads, each inode once.
fn sync_all(paths: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let next = AtomicUsize::new(0);
    let seen = Mutex::new(HashSet::new());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..SYNC_THREADS.min(paths.len()))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let synced = (|| {
                            // Many names share one inode (zero objects, copies): a stat finds
                            // the repeats without opening them.
                            let meta = std::fs::metadata(path)?;
                            let inode = (meta.dev(), meta.ino());
                            if seen.lock().expect("sync set poisoned").contains(&inode) {
                                return Ok(());
                            }
                            // The inode recorded is the one opened and synced, even if the name
                            // was replaced since the stat.
                            let file = File::open(path)?;
                            let meta = file.metadata()?;
                            let first = seen
                                .lock()
                                .expect("sync set poisoned")
                                .insert((meta.dev(), meta.ino()));
                            if first {
                                file.sync_all()?;
                            }
                            Ok::<_, std::io::Error>(())
                        })();
                        synced
                            .map_err(|e| Error::io(format!("syncing {}: {e}", path.display())))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| Error::io("a sync thread panicked"))?)
    })
}

/// A fresh, not yet existing path in the staging directory.
fn staging_path(staging: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    staging.join(format!("{}-{n}.tmp", std::process::id()))
}

/// Creates a staged file with `fill`, then renames it to `target`; nothing is left behind
/// on failure.
fn stage(
    staging: &Path,
    target: &Path,
    fill: impl FnOnce(&File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = staging_path(staging);
    let staged = (|| {
        let file = create_new(&tmp)?;
        fill(&file)?;
        drop(file);
        rename_into_place(&tmp, target)
    })();
    staged.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing {}: {e}", target.display()))
    })
}

/// Creates `path`, which must not exist.
fn create_new(path: &Path) -> std::io::Result<File> {
    File::options().write(true).create_new(true).open(path)
}

/// Renames `from` to `to`, replacing it, creating `to`'s directory when missing.
fn rename_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == ErrorKind::NotFound && from.exists() => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(from, to)
        }
        other => other,
    }
}

/// Records the object's sha256 as the user xattr opendal's `fs` service reads back; file
/// systems without user xattrs just go without (re-runs then read the object back).
fn set_digest(file: &File, meta: &ObjectMeta) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(digest) = &meta.sha256 {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(format!("user.{DIGEST_METADATA_KEY}"))
            .expect("no NUL in the xattr name");
        // SAFETY: a valid fd, a NUL-terminated name and a buffer of the given length.
        let rc = unsafe {
            libc::fsetxattr(
                file.as_raw_fd(),
                name.as_ptr(),
                digest.as_ptr().cast(),
                digest.len(),
                0,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOTSUP) {
                return Err(e);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, meta, DIGEST_METADATA_KEY);
    Ok(())
}

/// Starts writing the file's dirty pages to the device without waiting, so the barrier's
/// fsync finds most of them written already.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd; the whole file; a flag that never blocks on I/O completion.
        // Failure only means the barrier does all the work.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
