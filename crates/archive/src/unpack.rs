//! Writing an archive's entries into a fresh directory, each checked first.

use crate::paths::{entry_path, resolves_inside, symlink_target};
use crate::{Error, Extracted, Limits, Result, MARKER};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::EntryType;

/// Blocks of this size that hold only zeros are left as holes.
const HOLE_BLOCK: usize = 64 * 1024;

/// Unpacks the gzip-compressed tar `archive` into the new directory `root`.
pub(crate) fn unpack(archive: &Path, root: &Path, limits: &Limits) -> Result<Extracted> {
    let name = archive.display().to_string();
    let invalid = |problem: String| Error::Invalid {
        archive: name.clone(),
        problem,
    };
    let mut file =
        File::open(archive).map_err(|e| Error::io(format!("opening {}", archive.display()), e))?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(invalid("not a gzip file".into()));
    }
    file.rewind()
        .map_err(|e| Error::io(format!("reading {}", archive.display()), e))?;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(root)
        .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    let entries = tar
        .entries()
        .map_err(|e| invalid(format!("reading the tar stream: {e}")))?;
    let mut extracted = Extracted::default();
    let mut symlinks = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("reading the tar stream: {e}")))?;
        extracted.entries += 1;
        if extracted.entries > limits.max_entries {
            return Err(invalid(format!(
                "it holds more than the limit of {} entries",
                limits.max_entries
            )));
        }
        let raw = entry
            .path()
            .map_err(|e| invalid(format!("reading an entry's path: {e}")))?
            .into_owned();
        let refuse = |problem: String| Error::Refused {
            archive: name.clone(),
            entry: raw.display().to_string(),
            problem,
        };
        let rel = entry_path(&raw).map_err(refuse)?;
        if rel == Path::new(MARKER) {
            return Err(refuse(format!(
                "{MARKER} is the name of the extraction marker"
            )));
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() && !kind.is_dir() {
            return Err(refuse("its path is empty".into()));
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let path = root.join(&rel);
        match kind {
            EntryType::Directory => {
                if rel.as_os_str().is_empty() {
                    continue;
                }
                prepare_parent(root, &rel).map_err(refuse)?;
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(refuse("it replaces a file with a directory".into())),
                    Err(_) => std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?,
                }
                set_mode(&path, mode | 0o700)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                let total = extracted.bytes.saturating_add(size);
                if total > limits.max_bytes {
                    return Err(invalid(format!(
                        "it expands to more than the limit of {} bytes (entry '{}' of {size} \
                         bytes brings it to {total})",
                        limits.max_bytes,
                        raw.display()
                    )));
                }
                prepare_parent(root, &rel).map_err(refuse)?;
                clear_place(&path).map_err(refuse)?;
                let written = write_file(&mut entry, &path, mode, &mut buf)?;
                if written != size {
                    return Err(invalid(format!(
                        "entry '{}' holds {written} bytes, its header says {size}",
                        raw.display()
                    )));
                }
                extracted.bytes = total;
            }
            EntryType::Symlink => {
                let target = link_name(&entry).map_err(refuse)?;
                symlink_target(&rel, &target).map_err(refuse)?;
                prepare_parent(root, &rel).map_err(refuse)?;
                clear_place(&path).map_err(refuse)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                symlinks.push((raw.clone(), rel));
            }
            EntryType::Link => {
                let target = link_name(&entry).map_err(refuse)?;
                let target = entry_path(&target)
                    .map_err(|p| refuse(format!("hard link target '{}': {p}", target.display())))?;
                check_link_target(root, &target).map_err(refuse)?;
                prepare_parent(root, &rel).map_err(refuse)?;
                clear_place(&path).map_err(refuse)?;
                std::fs::hard_link(root.join(&target), &path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            }
            // Metadata for the entries after them, already applied by the tar reader.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device files are not extracted".into()))
            }
            EntryType::Fifo => return Err(refuse("FIFOs are not extracted".into())),
            other => {
                return Err(refuse(format!(
                    "entries of type {:?} are not extracted",
                    other.as_byte() as char
                )))
            }
        }
    }
    // Once the tree is complete, every link must still resolve inside it.
    for (raw, rel) in symlinks {
        resolves_inside(root, &rel).map_err(|problem| Error::Refused {
            archive: name.clone(),
            entry: raw.display().to_string(),
            problem,
        })?;
    }
    Ok(extracted)
}

/// A link entry's target.
fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<PathBuf, String> {
    entry
        .link_name()
        .map_err(|e| format!("reading its link target: {e}"))?
        .map(|t| t.into_owned())
        .ok_or_else(|| "a link without a target".to_string())
}

/// Makes sure every directory above `rel` is a real directory (created when missing); a
/// symbolic link there is refused, never followed.
fn prepare_parent(root: &Path, rel: &Path) -> Result<(), String> {
    let mut path = root.to_path_buf();
    let parents: Vec<_> = rel.parent().into_iter().flat_map(|p| p.iter()).collect();
    for (i, name) in parents.iter().enumerate() {
        path.push(name);
        let shown = || {
            parents[..=i]
                .iter()
                .collect::<PathBuf>()
                .display()
                .to_string()
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "its parent '{}' is a symbolic link, which is never followed",
                    shown()
                ))
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("its parent '{}' is not a directory", shown())),
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .map_err(|e| format!("creating '{}': {e}", shown()))?,
        }
    }
    Ok(())
}

/// A hard link's target must be a regular file already extracted, reached through real
/// directories.
fn check_link_target(root: &Path, target: &Path) -> Result<(), String> {
    let mut path = root.to_path_buf();
    for name in target.iter() {
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "hard link through the symbolic link '{}'",
                    target.display()
                ))
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "hard link to '{}', which is not in the archive before it",
                    target.display()
                ))
            }
        }
    }
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(format!(
            "hard link to '{}', which is not a regular file",
            target.display()
        ));
    }
    Ok(())
}

/// Removes a file or link an earlier entry left at `path` (the later entry wins, as with
/// `tar`); a directory there is refused.
fn clear_place(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err("it replaces a directory".into()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| format!("replacing it: {e}")),
        Err(_) => Ok(()),
    }
}

/// Writes `entry`'s data to the new file `path`, leaving zero blocks as holes; returns the
/// bytes read.
fn write_file(entry: &mut impl Read, path: &Path, mode: u32, buf: &mut [u8]) -> Result<u64> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    // O_EXCL: never opens what is there, a link included.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    let mut offset = 0u64;
    loop {
        let filled = read_full(entry, buf).map_err(io)?;
        // Each run of data blocks between zero blocks is written at once.
        let mut run: Option<usize> = None;
        for (i, block) in buf[..filled].chunks(HOLE_BLOCK).enumerate() {
            let start = i * HOLE_BLOCK;
            match (block.iter().any(|&b| b != 0), run) {
                (true, None) => run = Some(start),
                (false, Some(from)) => {
                    file.write_all_at(&buf[from..start], offset + from as u64)
                        .map_err(io)?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            file.write_all_at(&buf[from..filled], offset + from as u64)
                .map_err(io)?;
        }
        offset += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    file.set_len(offset).map_err(io)?;
    set_mode(path, mode)?;
    Ok(offset)
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_keep_their_bytes_and_zero_blocks_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        // Runs of data blocks across buffer ends, zero blocks between them, a partial last
        // block of data.
        let b = HOLE_BLOCK;
        let mut data = vec![0u8; 10 * b + 100];
        for range in [
            0..2 * b,
            3 * b + 1..3 * b + 2,
            5 * b..9 * b,
            10 * b..10 * b + 100,
        ] {
            for i in range {
                data[i] = (i % 251) as u8 + 1;
            }
        }
        let path = dir.path().join("f");
        let mut buf = vec![0u8; 4 * b];
        let written = write_file(&mut &data[..], &path, 0o644, &mut buf).unwrap();
        assert_eq!(written, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Blocks 2, 4 and 9 are holes (where the file system keeps them).
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= (8 * b + 4096) as u64,
            "{allocated} bytes allocated"
        );
    }
}
