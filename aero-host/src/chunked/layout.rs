//! Object keys: destination resolution (SPEC 1.10) and chunk naming.

use anyhow::{bail, Result};

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
            ObjectKind::Chunk => super::CHUNK_MIME,
            _ => "application/json",
        }
    }
}

/// Key of chunk `index` under `version_prefix`, with the publisher's width of 8.
pub fn chunk_key(version_prefix: &str, index: u64) -> String {
    let width = super::CHUNK_INDEX_WIDTH as usize;
    format!("{version_prefix}chunks/{index:0width$}.bin")
}

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
        format!("{}manifest.json", self.version_prefix)
    }

    /// `<version prefix>meta.json`.
    pub fn meta_key(&self) -> String {
        format!("{}meta.json", self.version_prefix)
    }

    /// `<image root>latest.json`.
    pub fn latest_key(&self) -> String {
        format!("{}latest.json", self.image_root)
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
    bail!("--prefix '{prefix}' {problem}: write it without leading or doubled slashes (e.g. 'images/win7/')")
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
        (Some(computed), Some(given)) if computed != given => bail!(
            "--image-version '{given}' differs from the computed version '{computed}'"
        ),
        (Some(computed), _) => computed.to_string(),
        (None, Some(given)) => given.to_string(),
        (None, None) => match inferred {
            Some((_, v)) => v.to_string(),
            None => bail!(
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
                bail!(
                    "the prefix ends in version '{inferred_version}' but the version is '{version}'"
                )
            } else {
                match last {
                    Some(l) => l.to_string(),
                    None => bail!("--image-id is required when the prefix is empty"),
                }
            }
        }
    };
    if let Some((inferred_id, inferred_version)) = inferred {
        if inferred_id == image_id && inferred_version != version {
            bail!(
                "the prefix names image '{image_id}' version '{inferred_version}' but the version is '{version}'"
            );
        }
    }
    for (what, value) in [("image id", &image_id), ("version", &version)] {
        validate_id(what, value)?;
    }
    let (image_root, version_prefix) = if segments.len() >= 2 && last == Some(version.as_str()) {
        if segments[segments.len() - 2] != image_id {
            bail!(
                "the prefix '{prefix}' puts version '{version}' under '{}', not under image '{image_id}'",
                segments[segments.len() - 2]
            );
        }
        let root = prefix[..prefix.len() - version.len() - 1].to_string();
        (root, prefix.clone())
    } else if last == Some(image_id.as_str()) {
        (prefix.clone(), format!("{prefix}{version}/"))
    } else {
        let root = format!("{prefix}{image_id}/");
        let version_prefix = format!("{root}{version}/");
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
pub fn validate_id(what: &str, value: &str) -> Result<()> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value != "."
        && value != "..";
    if !ok {
        bail!("invalid {what} '{value}': use 1 to 128 characters of A-Z a-z 0-9 . _ - (not '.' or '..')");
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
    fn rejects_contradictions() {
        assert!(resolve("images/win7/", None, Some("v1"), Some(V)).is_err());
        assert!(resolve("", None, Some("v1"), None).is_err());
        assert!(resolve("images/", None, None, None).is_err());
        assert!(resolve("images/win7/v2/", Some("win8"), Some("v2"), None).is_err());
        assert!(resolve("images/", Some("../x"), Some("v1"), None).is_err());
    }
}
