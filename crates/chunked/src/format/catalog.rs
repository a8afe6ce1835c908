//! The optional catalog of images (SPEC 3.4): `{"images":[...]}` or a bare array.

use crate::error::invalid;
use crate::layout::validate_id;
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::SystemTime;

/// One catalog entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Image id.
    pub id: String,
    /// Object key of the raw image, relative to the storage root; `None` for an entry that
    /// only describes a published chunked image.
    pub key: Option<String>,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Suggested chunk size.
    pub recommended_chunk_size_bytes: Option<u64>,
    /// Version the unversioned chunked routes use.
    pub chunked_version: Option<String>,
    /// Public (cacheable) or private.
    pub public: bool,
    /// ETag override.
    pub etag: Option<String>,
    /// Last-Modified override.
    pub last_modified: Option<SystemTime>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Shape {
    Wrapped { images: Vec<RawEntry> },
    Bare(Vec<RawEntry>),
}

#[derive(Deserialize)]
struct RawEntry {
    id: String,
    file: Option<String>,
    name: String,
    description: Option<String>,
    #[allow(dead_code)]
    content_type: Option<String>,
    recommended_chunk_size_bytes: Option<u64>,
    chunked_version: Option<String>,
    public: Option<bool>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Checks a catalog `file` and turns it into an object key.
pub fn file_key(file: &str) -> Result<String> {
    if file.is_empty() || file.len() > 512 || file.contains('\0') {
        invalid!("file '{file}' must be 1 to 512 bytes without NUL");
    }
    if file.starts_with('/') || file.contains('\\') {
        invalid!("file '{file}' must be a relative path");
    }
    let mut parts = Vec::new();
    for c in file.split('/') {
        match c {
            "" | "." => {}
            ".." => invalid!("file '{file}' must not contain '..'"),
            c if c.contains(':') && parts.is_empty() => {
                invalid!("file '{file}' must be a relative path")
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        invalid!("file '{file}' names no object");
    }
    Ok(parts.join("/"))
}

/// Whether `raw` is an acceptable entity tag (SPEC 3.7 sanitisation).
pub fn valid_etag(raw: &str) -> bool {
    if raw.len() > 1056 || !raw.is_ascii() {
        return false;
    }
    let t = raw.trim();
    if t.len() > 1024 || t.bytes().any(|b| b.is_ascii_whitespace()) {
        return false;
    }
    let quoted = t
        .strip_prefix("W/")
        .or_else(|| t.strip_prefix("w/"))
        .unwrap_or(t);
    quoted.len() >= 2
        && quoted.starts_with('"')
        && quoted.ends_with('"')
        && !quoted[1..quoted.len() - 1].contains('"')
        && t.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Parses and validates catalog bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>> {
    let shape: Shape = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: "catalog is not valid JSON".into(),
        source,
    })?;
    let raw = match shape {
        Shape::Wrapped { images } => images,
        Shape::Bare(v) => v,
    };
    if raw.is_empty() {
        invalid!("catalog lists no images");
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        validate_id("image id", &r.id)?;
        if !seen.insert(r.id.clone()) {
            invalid!("catalog lists image '{}' twice", r.id);
        }
        let key = r.file.as_deref().map(file_key).transpose()?;
        let chunked_version = match r.chunked_version.as_deref().map(str::trim) {
            Some(v) => {
                validate_id("chunked_version", v)?;
                Some(v.to_string())
            }
            None => None,
        };
        let etag = match r.etag.as_deref() {
            Some(e) => {
                if e.trim().is_empty() || !valid_etag(e) {
                    invalid!("image '{}': etag '{e}' is not a quoted entity tag", r.id);
                }
                Some(e.trim().to_string())
            }
            None => None,
        };
        let last_modified = match r.last_modified.as_deref() {
            Some(t) => {
                let parsed = chrono::DateTime::parse_from_rfc3339(t.trim()).map_err(|e| {
                    Error::invalid(format!("image '{}': last_modified '{t}': {e}", r.id))
                })?;
                let ts = parsed.timestamp();
                if ts < 0 {
                    invalid!("image '{}': last_modified '{t}' is before 1970", r.id);
                }
                Some(
                    SystemTime::UNIX_EPOCH
                        + std::time::Duration::new(ts as u64, parsed.timestamp_subsec_nanos()),
                )
            }
            None => None,
        };
        out.push(Entry {
            id: r.id,
            key,
            name: r.name,
            description: r.description,
            recommended_chunk_size_bytes: r.recommended_chunk_size_bytes,
            chunked_version,
            public: r.public.unwrap_or(true),
            etag,
            last_modified,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags() {
        assert!(valid_etag("\"abc\""));
        assert!(valid_etag("W/\"abc\""));
        assert!(!valid_etag("abc"));
        assert!(!valid_etag("\"a\"b\""));
        assert!(!valid_etag("\"a b\""));
    }

    #[test]
    fn accepts_both_shapes_and_rejects_bad_entries() {
        let e = parse(br#"{"images":[{"id":"a","file":"./x/a.raw","name":"A","public":false}]}"#)
            .unwrap();
        assert_eq!(e[0].key.as_deref(), Some("x/a.raw"));
        assert!(!e[0].public);
        let e = parse(br#"[{"id":"b","file":"b.img","name":"B","etag":"\"v1\"","last_modified":"2024-01-02T03:04:05Z","unknown":1}]"#).unwrap();
        assert_eq!(e[0].etag.as_deref(), Some("\"v1\""));
        assert!(e[0].last_modified.is_some());
        for bad in [
            &br#"[]"#[..],
            br#"[{"id":"a","file":"../a","name":"A"}]"#,
            br#"[{"id":"a","file":"/etc/passwd","name":"A"}]"#,
            br#"[{"id":"..","file":"a","name":"A"}]"#,
            br#"[{"id":"a","file":"a","name":"A"},{"id":"a","file":"b","name":"B"}]"#,
            br#"[{"id":"a","file":"a","name":"A","etag":"nope"}]"#,
            br#"[{"id":"a","file":"a","name":"A","last_modified":"1960-01-01T00:00:00Z"}]"#,
            br#"{"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
