//! What each route shape's path must satisfy before anything else runs (SPEC 3.3): raw
//! (still percent-encoded) length limits, then percent-decoding and the id rule of
//! `aero_chunked::layout`. The guard layer parses the path into one of these shapes.

use crate::layers::cors::RouteKind;
use crate::layers::errors::{bounded, ApiError};
use crate::layers::guard::Shape;
use aero_chunked::layout::id_ok;
use axum::http::{header, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;

/// Longest raw (percent-encoded) id or version segment.
const MAX_RAW_ID: usize = 128 * 3;
/// Longest raw chunk-name segment.
const MAX_RAW_CHUNK: usize = 36 * 3;

/// Percent-decodes a path segment; `None` when not UTF-8 (malformed escapes stay literal and
/// so fail every id and chunk-name rule).
pub fn decode(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The raw path segments after the leading `/`.
fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

fn id_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').nth(2).unwrap_or("")
}

/// `/v1/images/:image_id[/data]`.
#[derive(Clone)]
pub struct ImagePath {
    /// The image id.
    pub id: String,
}

impl Shape for ImagePath {
    const KIND: RouteKind = RouteKind::Data;
    const LIMITED: bool = true;
    const RANGES: bool = true;

    fn parse(path: &str) -> Result<Self, ApiError> {
        let not_found =
            || ApiError::new(StatusCode::NOT_FOUND, "image not found").accept_ranges(true);
        let raw = id_segment(path);
        if raw.len() > MAX_RAW_ID {
            return Err(not_found());
        }
        let id = decode(raw).filter(|id| id_ok(id)).ok_or_else(not_found)?;
        Ok(ImagePath { id })
    }
}

/// `/v1/images/:image_id/chunked/[:version/](manifest[.json]|chunks/:chunk_name)`.
#[derive(Clone)]
pub struct ChunkedPath {
    /// The image id.
    pub id: String,
    /// The version named in the path.
    pub version: Option<String>,
    /// The raw chunk name (length-checked; decoded and checked after the permit, SPEC 3.6).
    pub chunk: Option<String>,
}

impl Shape for ChunkedPath {
    const KIND: RouteKind = RouteKind::Data;
    const LIMITED: bool = true;
    const RANGES: bool = false;

    fn parse(path: &str) -> Result<Self, ApiError> {
        let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not found");
        let seg = segments(path);
        let raw_id = seg.get(2).copied().unwrap_or("");
        if raw_id.len() > MAX_RAW_ID {
            return Err(not_found().accept_ranges(true));
        }
        let rest = &seg[4.min(seg.len())..];
        let (raw_version, chunk) = match rest {
            ["manifest.json" | "manifest"] => (None, None),
            ["chunks", name] => (None, Some(*name)),
            [v, "manifest.json" | "manifest"] => (Some(*v), None),
            [v, "chunks", name] => (Some(*v), Some(*name)),
            _ => return Err(not_found()),
        };
        let id = decode(raw_id).filter(|i| id_ok(i)).ok_or_else(not_found)?;
        let version = match raw_version {
            Some(v) if v.len() > MAX_RAW_ID => return Err(not_found()),
            Some(v) => Some(decode(v).filter(|v| id_ok(v)).ok_or_else(not_found)?),
            None => None,
        };
        if chunk.is_some_and(|c| c.len() > MAX_RAW_CHUNK) {
            return Err(not_found());
        }
        Ok(ChunkedPath {
            id,
            version,
            chunk: chunk.map(str::to_string),
        })
    }
}

/// `/v1/images/:image_id/meta`: invalid ids are 400 here, not 404.
#[derive(Clone)]
pub struct MetaPath {
    /// The image id.
    pub id: String,
}

impl Shape for MetaPath {
    const KIND: RouteKind = RouteKind::Meta;
    const LIMITED: bool = false;
    const RANGES: bool = false;

    fn parse(path: &str) -> Result<Self, ApiError> {
        let raw = id_segment(path);
        if raw.len() > MAX_RAW_ID {
            return Err(
                ApiError::new(StatusCode::BAD_REQUEST, "bad request: image id too long")
                    .with(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            );
        }
        let id = decode(raw).filter(|i| id_ok(i)).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                &format!("bad request: invalid image id: \"{}\"", bounded(raw, 128)),
            )
        })?;
        Ok(MetaPath { id })
    }
}

/// `/v1/images`.
#[derive(Clone)]
pub struct ListPath;

impl Shape for ListPath {
    const KIND: RouteKind = RouteKind::Meta;
    const LIMITED: bool = false;
    const RANGES: bool = false;

    fn parse(_: &str) -> Result<Self, ApiError> {
        Ok(ListPath)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments() {
        assert_eq!(decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(decode("..%2Fx").as_deref(), Some("../x"));
        assert!(!decode("%zz").is_some_and(|s| id_ok(&s)));
        assert_eq!(decode("%ff"), None);
    }

    #[test]
    fn shapes_refuse_traversal_and_long_segments() {
        assert!(ImagePath::parse("/v1/images/%2e%2e").is_err());
        assert_eq!(ImagePath::parse("/v1/images/a..b/data").unwrap().id, "a..b");
        let long = format!("/v1/images/{}", "a".repeat(385));
        assert!(ImagePath::parse(&long).is_err());
        let c = ChunkedPath::parse("/v1/images/x/chunked/v1/chunks/00000001.bin").unwrap();
        assert_eq!(
            (c.version.as_deref(), c.chunk.as_deref()),
            (Some("v1"), Some("00000001.bin"))
        );
        assert!(ChunkedPath::parse("/v1/images/x/chunked/..%2Fsecret/manifest").is_err());
        assert!(ChunkedPath::parse("/v1/images/x/chunked/a/b/c/d").is_err());
        assert!(MetaPath::parse("/v1/images/%2e/meta").is_err());
    }
}
