//! `SHA256SUMS`-style checksum lists: the sha256 of a file looked up by its name.
//!
//! One line per file, as `sha256sum` writes them: `HASH  NAME` (text mode) or `HASH *NAME`
//! (binary mode); the BSD form `SHA256 (NAME) = HASH` is read too. Blank lines and lines
//! starting with `#` are skipped; any other line is an error, as is a name listed twice with
//! different digests.

use crate::load::{fetch, invalid, resolve};
use crate::Result;

/// The sha256 that the list at `list` (a URL or path, relative to `file_url`) gives for the
/// last path segment of `file_url`.
pub async fn sha256_from_list(list: &str, file_url: &str) -> Result<String> {
    let location = resolve(file_url, list)?;
    let name = file_name(file_url);
    let text = fetch(&location).await?;
    find_sha256(&text, name).map_err(|problem| invalid(&location, problem))
}

/// The last path segment of a URL or path (query and fragment dropped).
fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// The sha256 (lowercase hex) that `list` gives for `name`.
pub fn find_sha256(list: &str, name: &str) -> std::result::Result<String, String> {
    let mut found: Option<String> = None;
    for (number, line) in list.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (digest, listed) = parse_line(line).ok_or_else(|| {
            format!(
                "line {} is not 'SHA256  NAME', 'SHA256 *NAME' or 'SHA256 (NAME) = SHA256': '{line}'",
                number + 1
            )
        })?;
        if listed.strip_prefix("./").unwrap_or(listed) != name {
            continue;
        }
        let digest = digest.to_ascii_lowercase();
        match &found {
            Some(earlier) if *earlier != digest => {
                return Err(format!("'{name}' is listed twice with different digests"))
            }
            _ => found = Some(digest),
        }
    }
    found.ok_or_else(|| format!("'{name}' is not listed"))
}

/// `(digest, name)` of one line.
fn parse_line(line: &str) -> Option<(&str, &str)> {
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, digest) = rest.rsplit_once(") = ")?;
        return is_sha256(digest).then_some((digest, name));
    }
    let (digest, rest) = line.split_at_checked(64)?;
    let name = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))?;
    (is_sha256(digest) && !name.is_empty()).then_some((digest, name))
}

/// Whether `s` is a sha256 in hex (64 hex digits, either case).
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_each_form_and_bad_lists_are_refused() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let list =
            format!("# comment\n{a}  disk.qcow2\n{b} *./other.img\r\n\nSHA256 (bsd.raw) = {a}\n");
        assert_eq!(find_sha256(&list, "disk.qcow2").unwrap(), a);
        assert_eq!(find_sha256(&list, "other.img").unwrap(), "b".repeat(64));
        assert_eq!(find_sha256(&list, "bsd.raw").unwrap(), a);
        let err = find_sha256(&list, "missing.img").unwrap_err();
        assert!(err.contains("'missing.img' is not listed"), "{err}");
        let err = find_sha256(&format!("{a}  x\nnot a line\n"), "x").unwrap_err();
        assert!(err.contains("line 2 is not"), "{err}");
        let err = find_sha256(&format!("{}  x\n", "z".repeat(64)), "x").unwrap_err();
        assert!(err.contains("line 1 is not"), "{err}");
        let err = find_sha256(&format!("{a}  x\n{}  x\n", "c".repeat(64)), "x").unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
        assert_eq!(file_name("https://h/d/SHA256SUMS?x=1"), "SHA256SUMS");
    }
}
