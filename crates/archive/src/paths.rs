//! The path rules: entry names stay inside the directory, links point inside it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symbolic links followed while resolving one link (the kernel's own limit).
const MAX_LINK_HOPS: usize = 40;

/// An entry's path made relative and plain (`./` dropped); an absolute path or a `..`
/// component is refused.
pub(crate) fn entry_path(raw: &Path) -> Result<PathBuf, String> {
    let mut plain = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => plain.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("its path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute".into()),
        }
    }
    Ok(plain)
}

/// Checks, by its text alone, that the symbolic link at `link` (relative to the directory)
/// pointing to `target` stays inside the directory.
pub(crate) fn symlink_target(link: &Path, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("symbolic link with an empty target".into());
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!(
                        "symbolic link to '{}' points outside the directory",
                        target.display()
                    )
                })?
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "symbolic link to the absolute path '{}'",
                    target.display()
                ))
            }
        }
    }
    Ok(())
}

/// One step of a path being resolved.
enum Step {
    /// `/`: leaves the directory.
    Root,
    /// `..`.
    Up,
    /// A name.
    Down(OsString),
}

/// The steps of `path` (`.` dropped).
fn steps(path: &Path) -> impl DoubleEndedIterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::CurDir => None,
        Component::ParentDir => Some(Step::Up),
        Component::Normal(name) => Some(Step::Down(name.to_os_string())),
        Component::RootDir | Component::Prefix(_) => Some(Step::Root),
    })
}

/// Resolves the symbolic link at `link` (relative to `root`) as the kernel would, following
/// the links it meets within `root`, and fails if any step leaves `root`. A component that
/// does not exist ends the walk: the kernel would stop there too.
pub(crate) fn resolves_inside(root: &Path, link: &Path) -> Result<(), String> {
    let target = std::fs::read_link(root.join(link)).map_err(|e| e.to_string())?;
    let outside = || {
        format!(
            "symbolic link to '{}' resolves outside the directory",
            target.display()
        )
    };
    let mut current: Vec<OsString> = link
        .parent()
        .into_iter()
        .flat_map(|p| p.iter().map(|c| c.to_os_string()))
        .collect();
    let mut pending: VecDeque<Step> = steps(&target).collect();
    let mut hops = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Root => return Err(outside()),
            Step::Up => {
                current.pop().ok_or_else(outside)?;
            }
            Step::Down(name) => {
                current.push(name);
                let path = root.join(current.iter().collect::<PathBuf>());
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    return Ok(());
                };
                if meta.file_type().is_symlink() {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(format!(
                            "symbolic link '{}' goes through more than {MAX_LINK_HOPS} links",
                            link.display()
                        ));
                    }
                    current.pop();
                    let next = std::fs::read_link(&path).map_err(|e| e.to_string())?;
                    for step in steps(&next).rev() {
                        pending.push_front(step);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_relative_without_dot_dot() {
        assert_eq!(entry_path(Path::new("./a/b")).unwrap(), Path::new("a/b"));
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
        assert!(entry_path(Path::new("a/../../b")).is_err());
    }

    #[test]
    fn symlink_targets_are_checked_by_text() {
        assert!(symlink_target(Path::new("a/b/l"), Path::new("../c")).is_ok());
        assert!(symlink_target(Path::new("a/l"), Path::new("../../c")).is_err());
        assert!(symlink_target(Path::new("l"), Path::new("/etc")).is_err());
    }
}
