//! ETags, HTTP dates and conditional requests (SPEC 3.5, 3.7).

use axum::http::{header, HeaderMap, HeaderValue};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What validators a resource has.
#[derive(Debug, Clone)]
pub struct Validators {
    /// The (sanitised) entity tag.
    pub etag: String,
    /// Last modification, when known and not before the epoch.
    pub last_modified: Option<SystemTime>,
}

fn visible(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
}

/// `"<size hex>-<secs hex>-<nanos hex>"` (weak with `W/` when `weak`).
pub fn derived_etag(size: u64, modified: Option<SystemTime>, weak: bool) -> String {
    let (secs, nanos) = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    format!(
        "{}\"{size:x}-{secs:x}-{nanos:x}\"",
        if weak { "W/" } else { "" }
    )
}

/// Drops times before the epoch.
pub fn post_epoch(t: Option<SystemTime>) -> Option<SystemTime> {
    t.filter(|t| t.duration_since(UNIX_EPOCH).is_ok())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The last second an HTTP date can name: 9999-12-31T23:59:59Z.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// An HTTP date; times past year 9999 (which the formatter cannot write) become its last second.
fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t.min(UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE_SECS)))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let v = headers.get(name)?;
    if !visible(v.as_bytes()) {
        return None;
    }
    v.to_str().ok()
}

fn strip_weak(t: &str) -> &str {
    t.strip_prefix("W/")
        .or_else(|| t.strip_prefix("w/"))
        .unwrap_or(t)
}

/// Splits an `If-None-Match` list on commas outside quotes.
fn split_tags(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

/// Whether `If-None-Match` matches `etag` (weak comparison, `*` matches).
fn none_match(value: &str, etag: &str) -> bool {
    split_tags(value)
        .into_iter()
        .filter(|t| !t.is_empty())
        .any(|t| t == "*" || strip_weak(t) == strip_weak(etag))
}

/// Whether the request's conditionals say "not modified" (If-None-Match wins over
/// If-Modified-Since whenever present).
fn not_modified(headers: &HeaderMap, v: &Validators) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return header_str(headers, header::IF_NONE_MATCH)
            .is_some_and(|inm| none_match(inm, &v.etag));
    }
    if let (Some(ims), Some(lm)) = (
        header_str(headers, header::IF_MODIFIED_SINCE),
        v.last_modified,
    ) {
        if let Ok(date) = httpdate::parse_http_date(ims.trim()) {
            return secs(lm) <= secs(date);
        }
    }
    false
}

/// Whether `If-Range` (if present) lets the Range be honoured.
pub fn if_range_satisfied(headers: &HeaderMap, v: &Validators) -> bool {
    let Some(raw) = headers.get(header::IF_RANGE) else {
        return true;
    };
    if !visible(raw.as_bytes()) {
        return false;
    }
    let Ok(value) = raw.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") || value.starts_with("w/") {
        let weak = |t: &str| t.starts_with("W/") || t.starts_with("w/");
        return !weak(value) && !weak(&v.etag) && value == v.etag;
    }
    match (httpdate::parse_http_date(value), v.last_modified) {
        (Ok(date), Some(lm)) => secs(lm) <= secs(date),
        _ => false,
    }
}

/// Adds `v` as `ETag` and `Last-Modified` to `out`, and says whether the request's
/// conditionals make the answer a 304.
pub fn revalidate(req: &HeaderMap, out: &mut HeaderMap, v: &Validators) -> bool {
    put_validators(out, v);
    not_modified(req, v)
}

/// Adds `ETag` and `Last-Modified`.
fn put_validators(out: &mut HeaderMap, v: &Validators) {
    if let Ok(value) = HeaderValue::from_str(&v.etag) {
        out.insert(header::ETAG, value);
    }
    if let Some(lm) = v.last_modified {
        if let Ok(value) = HeaderValue::from_str(&http_date(lm)) {
            out.insert(header::LAST_MODIFIED, value);
        }
    }
}

/// Whether the request carries credentials that make responses private.
pub fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn dates_past_year_9999_do_not_panic() {
        let far = UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE_SECS + 86_400 * 365 * 1000);
        assert_eq!(http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn etags() {
        assert_eq!(derived_etag(16, None, true), "W/\"10-0-0\"");
    }

    #[test]
    fn conditionals() {
        let lm = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let v = Validators {
            etag: "\"x\"".into(),
            last_modified: Some(lm),
        };
        assert!(not_modified(
            &hm(&[("if-none-match", "\"y\", W/\"x\"")]),
            &v
        ));
        assert!(not_modified(&hm(&[("if-none-match", "*")]), &v));
        let later = http_date(lm + Duration::from_secs(5));
        let earlier = http_date(lm - Duration::from_secs(5));
        assert!(not_modified(&hm(&[("if-modified-since", &later)]), &v));
        assert!(!not_modified(&hm(&[("if-modified-since", &earlier)]), &v));
        assert!(!not_modified(
            &hm(&[("if-none-match", "\"y\""), ("if-modified-since", &later)]),
            &v
        ));
        assert!(if_range_satisfied(&hm(&[("if-range", "\"x\"")]), &v));
        assert!(!if_range_satisfied(&hm(&[("if-range", "W/\"x\"")]), &v));
        assert!(if_range_satisfied(&hm(&[("if-range", &later)]), &v));
        assert!(!if_range_satisfied(&hm(&[("if-range", &earlier)]), &v));
        assert!(!if_range_satisfied(&hm(&[("if-range", "garbage")]), &v));
        assert_eq!(split_tags("\"a,b\", \"c\""), vec!["\"a,b\"", "\"c\""]);
    }

    #[test]
    fn revalidation_sets_the_validators_either_way() {
        let v = Validators {
            etag: "\"x\"".into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1)),
        };
        let mut out = HeaderMap::new();
        assert!(revalidate(&hm(&[("if-none-match", "\"x\"")]), &mut out, &v));
        assert_eq!(out[header::ETAG], "\"x\"");
        assert_eq!(out[header::LAST_MODIFIED], "Thu, 01 Jan 1970 00:00:01 GMT");
        let mut out = HeaderMap::new();
        assert!(!revalidate(&HeaderMap::new(), &mut out, &v));
        assert_eq!(out[header::ETAG], "\"x\"");
    }
}
