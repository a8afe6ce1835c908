//! Where objects live: destination resolution (SPEC 1.10), the keys of manifests, meta and
//! pointers, chunk object names (formatted and parsed here only) and the one rule for image ids
//! and versions (SPEC 3.3).

use crate::error::invalid;
use crate::format::{CHUNK_INDEX_WIDTH, CHUNK_MIME};
use crate::Result;

/// The role of a published object, which decides its HTTP metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `chunks/NNNNNNNN.bin`.
    Chunk,
    /// `manifest.json`.
    Manifest,
    /// `meta.json`.
    Meta,
    /// `latest.json`.
    Latest,
}

impl ObjectKind {
    /// The object's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            ObjectKind::Chunk => CHUNK_MIME,
            _ => "application/json",
        }
    }
}

/// The directory of chunk objects, relative to the manifest.
pub const CHUNKS_DIR: &str = "chunks/";
/// Most digits a chunk index may have (`chunkIndexWidth` ≤ 32).
pub const MAX_CHUNK_INDEX_WIDTH: u32 = 32;

/// File name of chunk `index` with `width` digits: `00000042.bin`.
pub fn chunk_file_name(index: u64, width: u32) -> String {
    format!("{index:0width$}.bin", width = width as usize)
}

/// Name of chunk `index` relative to the manifest: `chunks/00000042.bin`.
pub fn chunk_name(index: u64, width: u32) -> String {
    format!("{CHUNKS_DIR}{}", chunk_file_name(index, width))
}

/// Key of the chunk object called `file_name` (`00000042.bin`) under `version_prefix`.
pub fn chunk_file_key(version_prefix: &str, file_name: &str) -> String {
    format!("{version_prefix}{CHUNKS_DIR}{file_name}")
}

/// Key of chunk `index` under `version_prefix`, with the publisher's width of 8.
pub fn chunk_key(version_prefix: &str, index: u64) -> String {
    chunk_file_key(version_prefix, &chunk_file_name(index, CHUNK_INDEX_WIDTH))
}

/// Whether `file_name` has the shape of a chunk object name: `^[0-9]{1,32}\.bin$`.
pub fn chunk_name_ok(file_name: &str) -> bool {
    file_name.strip_suffix(".bin").is_some_and(|d| {
        (1..=MAX_CHUNK_INDEX_WIDTH as usize).contains(&d.len())
            && d.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The index a chunk file name stands for when it is the canonical name with `width` digits
/// (what [`chunk_file_name`] makes), else `None`.
pub fn parse_chunk_file_name(file_name: &str, width: u32) -> Option<u64> {
    if !chunk_name_ok(file_name) {
        return None;
    }
    let digits = file_name.strip_suffix(".bin")?;
    let index: u64 = digits.parse().ok()?;
    (digits.len() == (width as usize).max(1)).then_some(index)
}

/// `<prefix><image id>/`: where an image's `latest.json` and versions live.
pub fn image_root(prefix: &str, image_id: &str) -> String {
    format!("{prefix}{image_id}/")
}

/// `<image root><version>/`: where a version's manifest, meta and chunks live.
pub fn version_prefix(image_root: &str, version: &str) -> String {
    format!("{image_root}{version}/")
}

/// `<version prefix>manifest.json`.
pub fn manifest_key(version_prefix: &str) -> String {
    format!("{version_prefix}{MANIFEST_NAME}")
}

/// `<image root>latest.json`.
pub fn latest_key(image_root: &str) -> String {
    format!("{image_root}{LATEST_NAME}")
}

/// File name of a manifest.
pub const MANIFEST_NAME: &str = "manifest.json";
/// File name of the side-car.
pub const META_NAME: &str = "meta.json";
/// File name of the pointer.
pub const LATEST_NAME: &str = "latest.json";

/// The inputs of destination resolution.
#[derive(Debug, Clone, Default)]
pub struct DestinationRequest<'a> {
    /// `--prefix`.
    pub prefix: &'a str,
    /// `--image-id`.
    pub image_id: Option<&'a str>,
    /// `--image-version`.
    pub image_version: Option<&'a str>,
    /// The computed `sha256-…` version, when `--compute-version sha256`.
    pub computed_version: Option<&'a str>,
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Image id.
    pub image_id: String,
    /// Version.
    pub version: String,
    /// `images/<id>/` — where `latest.json` lives.
    pub image_root: String,
    /// `images/<id>/<version>/`.
    pub version_prefix: String,
}

impl Destination {
    /// `<version prefix>manifest.json`.
    pub fn manifest_key(&self) -> String {
        manifest_key(&self.version_prefix)
    }

    /// `<version prefix>meta.json`.
    pub fn meta_key(&self) -> String {
        format!("{}{META_NAME}", self.version_prefix)
    }

    /// `<image root>latest.json`.
    pub fn latest_key(&self) -> String {
        latest_key(&self.image_root)
    }
}

/// Normalises a prefix: trailing `/` added unless empty.
pub fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

/// Refuses a publish prefix that `normalize_prefix` would not keep verbatim: a leading `/` or
/// an empty segment (`//`). Aero's publisher writes such prefixes as given, so rewriting them
/// would put the same command's objects under different keys.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let problem = if prefix.starts_with('/') {
        "starts with '/'"
    } else if prefix.contains("//") {
        "contains an empty segment ('//')"
    } else {
        return Ok(());
    };
    invalid!("--prefix '{prefix}' {problem}: write it without leading or doubled slashes (e.g. 'images/win7/')")
}

fn is_sha256_version(v: &str) -> bool {
    v.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Resolves image id, version and keys exactly as SPEC 1.10 describes.
pub fn resolve_destination(req: &DestinationRequest<'_>) -> Result<Destination> {
    let prefix = normalize_prefix(req.prefix);
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let inferred =
        (segments.len() >= 2).then(|| (segments[segments.len() - 2], segments[segments.len() - 1]));
    let last = segments.last().copied();

    let version = match (req.computed_version, req.image_version) {
        (Some(computed), Some(given)) if computed != given => invalid!(
            "--image-version '{given}' differs from the computed version '{computed}'"
        ),
        (Some(computed), _) => computed.to_string(),
        (None, Some(given)) => given.to_string(),
        (None, None) => match inferred {
            Some((_, v)) => v.to_string(),
            None => invalid!(
                "--image-version is required (or --compute-version sha256, or a prefix ending in <image-id>/<version>/)"
            ),
        },
    };
    let image_id = match req.image_id {
        Some(id) => id.to_string(),
        None => {
            if segments.len() >= 2 && last == Some(version.as_str()) {
                segments[segments.len() - 2].to_string()
            } else if let Some((_, inferred_version)) = inferred.filter(|(_, iv)| {
                is_sha256_version(&version) && is_sha256_version(iv) && *iv != version
            }) {
                invalid!(
                    "the prefix ends in version '{inferred_version}' but the version is '{version}'"
                )
            } else {
                match last {
                    Some(l) => l.to_string(),
                    None => invalid!("--image-id is required when the prefix is empty"),
                }
            }
        }
    };
    if let Some((inferred_id, inferred_version)) = inferred {
        if inferred_id == image_id && inferred_version != version {
            invalid!(
                "the prefix names image '{image_id}' version '{inferred_version}' but the version is '{version}'"
            );
        }
    }
    for (what, value) in [("image id", &image_id), ("version", &version)] {
        validate_id(what, value)?;
    }
    let (image_root, version_prefix) = if segments.len() >= 2 && last == Some(version.as_str()) {
        if segments[segments.len() - 2] != image_id {
            invalid!(
                "the prefix '{prefix}' puts version '{version}' under '{}', not under image '{image_id}'",
                segments[segments.len() - 2]
            );
        }
        let root = prefix[..prefix.len() - version.len() - 1].to_string();
        (root, prefix.clone())
    } else if last == Some(image_id.as_str()) {
        (prefix.clone(), version_prefix(&prefix, &version))
    } else {
        let root = image_root(&prefix, &image_id);
        let version_prefix = version_prefix(&root, &version);
        (root, version_prefix)
    };
    Ok(Destination {
        image_id,
        version,
        image_root,
        version_prefix,
    })
}

/// Image ids and versions: 1..=128 bytes of `[A-Za-z0-9._-]`, not `.` or `..` (SPEC 3.3).
pub fn id_ok(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value != "."
        && value != ".."
}

/// [`id_ok`] with a message naming `what` the value is.
pub fn validate_id(what: &str, value: &str) -> Result<()> {
    if !id_ok(value) {
        invalid!("invalid {what} '{value}': use 1 to 128 characters of A-Z a-z 0-9 . _ - (not '.' or '..')");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "sha256-0000000000000000000000000000000000000000000000000000000000000000";

    fn resolve(
        prefix: &str,
        id: Option<&str>,
        ver: Option<&str>,
        computed: Option<&str>,
    ) -> Result<Destination> {
        resolve_destination(&DestinationRequest {
            prefix,
            image_id: id,
            image_version: ver,
            computed_version: computed,
        })
    }

    #[test]
    fn follows_the_spec_examples() {
        let d = resolve("images/win7/", None, None, Some(V)).unwrap();
        assert_eq!(d.image_id, "win7");
        assert_eq!(d.version_prefix, format!("images/win7/{V}/"));
        assert_eq!(d.latest_key(), "images/win7/latest.json");

        let d = resolve("images/", Some("win7"), Some("v1"), None).unwrap();
        assert_eq!(d.version_prefix, "images/win7/v1/");
        assert_eq!(d.image_root, "images/win7/");

        let d = resolve("images/win7", None, None, None).unwrap();
        assert_eq!(
            (d.image_id.as_str(), d.version.as_str()),
            ("images", "win7")
        );
        assert_eq!(d.version_prefix, "images/win7/");

        let d = resolve("images/win7/v2/", None, None, None).unwrap();
        assert_eq!(d.image_id, "win7");
        assert_eq!(d.manifest_key(), "images/win7/v2/manifest.json");
    }

    #[test]
    fn prefixes_with_leading_or_doubled_slashes_are_refused() {
        for good in ["", "images/", "images/win7", "images/win7/v1/"] {
            check_prefix(good).unwrap();
        }
        let err = check_prefix("/images/win7/").unwrap_err().to_string();
        assert!(err.contains("'/images/win7/' starts with '/'"), "{err}");
        let err = check_prefix("images//win7/").unwrap_err().to_string();
        assert!(err.contains("empty segment ('//')"), "{err}");
        assert!(check_prefix("/").is_err());
    }

    #[test]
    fn ids_and_chunk_names() {
        assert!(id_ok("win7") && id_ok("a..b") && id_ok("sha256-abc"));
        for bad in ["", ".", "..", "a/b", "a\\b", "é", &"x".repeat(129)] {
            assert!(!id_ok(bad), "{bad}");
            assert!(validate_id("image id", bad).is_err());
        }
        assert!(chunk_name_ok("00000001.bin") && chunk_name_ok("0.bin"));
        for bad in [
            ".bin",
            "1.bin.bin",
            "../1.bin",
            "a.bin",
            &format!("{}.bin", "1".repeat(33)),
        ] {
            assert!(!chunk_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn chunk_names_are_formatted_and_parsed_alike() {
        assert_eq!(
            chunk_key("images/a/v1/", 42),
            "images/a/v1/chunks/00000042.bin"
        );
        assert_eq!(chunk_name(7, 2), "chunks/07.bin");
        assert_eq!(chunk_name(123, 2), "chunks/123.bin");
        for (index, width) in [(0, 1), (7, 2), (42, 8), (99_999_999, 8), (5, 32)] {
            let name = chunk_file_name(index, width);
            assert_eq!(parse_chunk_file_name(&name, width), Some(index), "{name}");
        }
        assert_eq!(parse_chunk_file_name("7.bin", 2), None);
        assert_eq!(parse_chunk_file_name("007.bin", 2), None);
        assert_eq!(parse_chunk_file_name("0.bin", 0), Some(0));
        assert_eq!(parse_chunk_file_name("x7.bin", 2), None);
    }

    #[test]
    fn rejects_contradictions() {
        assert!(resolve("images/win7/", None, Some("v1"), Some(V)).is_err());
        assert!(resolve("", None, Some("v1"), None).is_err());
        assert!(resolve("images/", None, None, None).is_err());
        assert!(resolve("images/win7/v2/", Some("win8"), Some("v2"), None).is_err());
        assert!(resolve("images/", Some("../x"), Some("v1"), None).is_err());
    }
}
