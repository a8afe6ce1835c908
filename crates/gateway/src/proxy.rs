//! The byte proxies: the Range proxy of the uploaded object (SPEC 4.6) and the chunked
//! manifest and chunk routes (SPEC 4.7), streamed from S3 with the SPEC's headers, or, for
//! the chunked routes with CloudFront configured, a 307 to CloudFront. Each takes a lease or
//! a session that may read the image ([`authz::authorize_read`]).

use crate::authz::authorize_read;
use crate::error::{ApiError, ApiResult};
use crate::record::{ImageRecord, State};
use crate::settings::ImageCacheControl;
use crate::Gateway;
use axum::body::Body;
use axum::extract::{Path, State as Shared};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::SystemTime;

/// Longest `Range` header (413 beyond, without an S3 call).
const MAX_RANGE_HEADER: usize = 16 * 1024;
/// Longest `If-None-Match` considered.
const MAX_IF_NONE_MATCH: usize = 16 * 1024;
/// Longest `If-Modified-Since` considered.
const MAX_IF_MODIFIED_SINCE: usize = 128;
/// Longest `If-Range` considered (the Range is ignored beyond).
const MAX_IF_RANGE: usize = 256;
/// Longest chunk index (digits).
const MAX_CHUNK_DIGITS: usize = 32;
/// Largest bare chunk number (8 digits).
const MAX_BARE_CHUNK: u64 = 99_999_999;

type Gw = Shared<Arc<Gateway>>;

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One byte range: `start` to `end` inclusive, or to the end.
#[derive(Debug, PartialEq, Eq)]
struct ByteRange {
    start: u64,
    end: Option<u64>,
}

/// Parses `bytes=<start>-<end>` or `bytes=<start>-` (case-insensitive unit, no spaces).
fn parse_range(value: &str) -> Option<ByteRange> {
    let (unit, spec) = value.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !(end.is_empty() || digits(end)) {
        return None;
    }
    let start: u64 = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse::<u64>().ok()?)
    };
    if end.is_some_and(|end| end < start) {
        return None;
    }
    Some(ByteRange { start, end })
}

/// The entity tags of an `If-None-Match` list (commas inside quotes respected).
fn etag_list(value: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                tags.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    tags.push(value[start..].trim());
    tags.retain(|t| !t.is_empty());
    tags
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"')
}

fn http_date(rec: &ImageRecord) -> Option<SystemTime> {
    let iso = rec.last_modified.as_deref()?;
    let t = chrono::DateTime::parse_from_rfc3339(iso).ok()?;
    Some(SystemTime::from(t.with_timezone(&chrono::Utc)))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether the request's validators say the client's copy is current (304).
fn not_modified(headers: &HeaderMap, rec: &ImageRecord) -> bool {
    if let Some(inm) =
        text(headers, &header::IF_NONE_MATCH).filter(|v| v.len() <= MAX_IF_NONE_MATCH)
    {
        let Some(etag) = rec.etag.as_deref() else {
            return false;
        };
        return etag_list(inm)
            .iter()
            .any(|t| *t == "*" || opaque(t) == opaque(etag));
    }
    let since = text(headers, &header::IF_MODIFIED_SINCE)
        .filter(|v| v.len() <= MAX_IF_MODIFIED_SINCE)
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, http_date(rec)) {
        (Some(since), Some(modified)) => secs(modified) <= secs(since),
        _ => false,
    }
}

/// The response headers every proxied byte response carries.
fn byte_headers(
    gw: &Gateway,
    s3: &HeaderMap,
    cache_control: &str,
    default_type: &'static str,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let cache = if cache_control.contains("no-transform") {
        cache_control.to_string()
    } else if cache_control.is_empty() {
        "no-transform".to_string()
    } else {
        format!("{cache_control}, no-transform")
    };
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h.insert(
        header::CONTENT_TYPE,
        s3.get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(default_type)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&gw.settings.cross_origin_resource_policy) {
        h.insert(HeaderName::from_static("cross-origin-resource-policy"), v);
    }
    for name in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::CONTENT_RANGE,
        header::CONTENT_LENGTH,
    ] {
        if let Some(v) = s3.get(&name) {
            h.insert(name, v.clone());
        }
    }
    h
}

/// The Cache-Control of `rec`'s bytes: `IMAGE_CACHE_CONTROL` for public images, and
/// `private, no-store, no-transform` for the others whatever it says (SPEC 5.1).
fn cache_control(gw: &Gateway, rec: &ImageRecord) -> &'static str {
    if rec.visibility == aero_access::Visibility::Public {
        gw.settings.image_cache_control.header()
    } else {
        ImageCacheControl::PrivateNoStore.header()
    }
}

fn unsatisfiable(size: Option<i64>) -> ApiError {
    let e = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "RANGE_NOT_SATISFIABLE",
        "the Range is not one satisfiable bytes=START-[END] range",
    )
    .with(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match size.and_then(|s| HeaderValue::from_str(&format!("bytes */{s}")).ok()) {
        Some(v) => e.with(header::CONTENT_RANGE, v),
        None => e,
    }
}

fn encoded(s3: &HeaderMap) -> bool {
    text(s3, &header::CONTENT_ENCODING).is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
}

/// Maps an S3 error status of a proxied read.
fn s3_status(status: u16, size: Option<i64>, what: &str) -> ApiError {
    match status {
        404 => ApiError::not_found(format!("{what} is not in the bucket")),
        416 => unsatisfiable(size),
        400..=499 => ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "S3_ERROR",
            format!("S3 answered {status} for {what}"),
        ),
        _ => ApiError::bad_gateway("S3_ERROR", format!("S3 answered {status} for {what}")),
    }
}

fn stream(resp: reqwest::Response) -> Body {
    Body::from_stream(resp.bytes_stream())
}

/// `GET|HEAD /v1/images/{id}/range`: the uploaded object with Range and conditionals.
pub async fn range(
    gw: Gw,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rec = authorize_read(&gw, &headers, &uri, &id).await?;
    if headers
        .get(header::RANGE)
        .is_some_and(|v| v.len() > MAX_RANGE_HEADER)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RANGE_TOO_LARGE",
            format!("the Range header is over {MAX_RANGE_HEADER} bytes"),
        ));
    }
    if rec.state != State::Ready {
        return Err(ApiError::invalid_state(format!(
            "image {id} is {}, not ready",
            rec.state.as_str()
        )));
    }
    let size = rec.size_bytes;
    let cache_control = cache_control(&gw, &rec);
    if not_modified(&headers, &rec) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        let h = resp.headers_mut();
        h.extend(byte_headers(
            &gw,
            &HeaderMap::new(),
            cache_control,
            "application/octet-stream",
        ));
        h.remove(header::CONTENT_TYPE);
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        for (name, value) in [
            (header::ETAG, rec.etag.clone()),
            (
                header::LAST_MODIFIED,
                http_date(&rec).map(httpdate::fmt_http_date),
            ),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert(name, v);
            }
        }
        return Ok(resp);
    }
    if method == Method::HEAD {
        let resp = gw
            .s3
            .send(
                "HeadObject",
                Method::HEAD,
                &rec.source_key,
                &[],
                HeaderMap::new(),
                Vec::new(),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(s3_status(resp.status().as_u16(), size, "the image"));
        }
        let mut out = StatusCode::OK.into_response();
        let h = out.headers_mut();
        h.extend(byte_headers(
            &gw,
            resp.headers(),
            cache_control,
            "application/octet-stream",
        ));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(out);
    }

    // Which range, if any, and under which S3 condition.
    let mut wanted = None;
    let mut condition = HeaderMap::new();
    let if_range = text(&headers, &header::IF_RANGE);
    if let Some(value) = text(&headers, &header::RANGE) {
        if if_range.is_none_or(|v| v.len() <= MAX_IF_RANGE) {
            let r = parse_range(value).ok_or_else(|| unsatisfiable(size))?;
            if size.is_some_and(|s| r.start >= s as u64) {
                return Err(unsatisfiable(size));
            }
            wanted = Some(r);
            if let Some(validator) = if_range {
                let keep = if validator.starts_with('"') || validator.starts_with("W/") {
                    match rec.etag.as_deref() {
                        Some(etag)
                            if !validator.starts_with("W/")
                                && !etag.starts_with("W/")
                                && opaque(validator) == opaque(etag) =>
                        {
                            condition.insert(
                                header::IF_MATCH,
                                HeaderValue::from_str(etag).map_err(ApiError::internal)?,
                            );
                            true
                        }
                        _ => false,
                    }
                } else {
                    match (httpdate::parse_http_date(validator).ok(), http_date(&rec)) {
                        (Some(date), Some(modified)) if secs(modified) <= secs(date) => {
                            condition.insert(
                                header::IF_UNMODIFIED_SINCE,
                                HeaderValue::from_str(validator).map_err(ApiError::internal)?,
                            );
                            true
                        }
                        _ => false,
                    }
                };
                if !keep {
                    wanted = None;
                    condition.clear();
                }
            }
        }
    }
    let mut request = condition.clone();
    if let Some(r) = &wanted {
        let value = match r.end {
            Some(end) => format!("bytes={}-{end}", r.start),
            None => format!("bytes={}-", r.start),
        };
        request.insert(
            header::RANGE,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    let mut resp = gw
        .s3
        .send(
            "GetObject",
            Method::GET,
            &rec.source_key,
            &[],
            request,
            Vec::new(),
        )
        .await?;
    if resp.status().as_u16() == 412 {
        wanted = None;
        resp = gw
            .s3
            .send(
                "GetObject",
                Method::GET,
                &rec.source_key,
                &[],
                HeaderMap::new(),
                Vec::new(),
            )
            .await?;
    }
    if !resp.status().is_success() {
        return Err(s3_status(resp.status().as_u16(), size, "the image"));
    }
    if encoded(resp.headers()) {
        return Err(ApiError::bad_gateway("S3_ERROR", "S3 sent an encoded body"));
    }
    let ranged = resp.headers().contains_key(header::CONTENT_RANGE);
    if wanted.is_some() && !ranged {
        return Err(ApiError::bad_gateway(
            "S3_ERROR",
            "S3 answered a Range request without Content-Range",
        ));
    }
    let h = byte_headers(
        &gw,
        resp.headers(),
        cache_control,
        "application/octet-stream",
    );
    let mut out = Response::new(stream(resp));
    *out.status_mut() = if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    out.headers_mut().extend(h);
    out.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(out)
}

/// The key of the manifest and the directory its chunks are under (SPEC 4.7).
pub(crate) fn chunked_keys(rec: &ImageRecord) -> ApiResult<(String, String)> {
    if let Some(key) = &rec.chunked_manifest_key {
        let key = key.trim_start_matches('/').to_string();
        let base = key
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        return Ok((key, base));
    }
    if let Some(prefix) = &rec.chunked_prefix {
        let mut base = prefix.trim_start_matches('/').to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        return Ok((format!("{base}manifest.json"), base));
    }
    Err(ApiError::not_found(format!(
        "image {} has no chunked form",
        rec.id
    )))
}

/// The chunk object name of a route parameter: `^\d+(\.bin)?$`; with `.bin` the digits are
/// kept verbatim, a bare number is zero-padded to 8 digits.
fn chunk_name(param: &str) -> ApiResult<String> {
    let (digits, verbatim) = match param.strip_suffix(".bin") {
        Some(d) => (d, true),
        None => (param, false),
    };
    let bad = || {
        ApiError::bad_request(format!(
            "chunk index '{param}' must be digits (at most {MAX_CHUNK_DIGITS}), optionally followed by .bin"
        ))
    };
    if digits.is_empty()
        || digits.len() > MAX_CHUNK_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if verbatim {
        return Ok(format!("{digits}.bin"));
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n > MAX_BARE_CHUNK {
        return Err(ApiError::bad_request(format!(
            "chunk index {n} is over {MAX_BARE_CHUNK}; name it with .bin"
        )));
    }
    Ok(format!("{n:08}.bin"))
}

/// A 307 to CloudFront for `key` (SPEC 4.7), when CloudFront is configured.
fn redirect(gw: &Gateway, key: &str) -> ApiResult<Option<Response>> {
    let cloudfront = gw
        .settings
        .cloudfront
        .as_ref()
        .map_err(crate::routes::misconfig)?;
    let Some(cf) = cloudfront else {
        return Ok(None);
    };
    let location = cf
        .redirect_location(key, SystemTime::now())
        .map_err(|e| crate::routes::misconfig(&e))?;
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(Some(resp))
}

async fn chunked_object(
    gw: &Gateway,
    method: Method,
    rec: &ImageRecord,
    key: &str,
    default_type: &'static str,
) -> ApiResult<Response> {
    if rec.state != State::Ready {
        return Err(ApiError::invalid_state(format!(
            "image {} is {}, not ready",
            rec.id,
            rec.state.as_str()
        )));
    }
    if let Some(resp) = redirect(gw, key)? {
        return Ok(resp);
    }
    let operation = if method == Method::HEAD {
        "HeadObject"
    } else {
        "GetObject"
    };
    let resp = gw
        .s3
        .send(operation, method, key, &[], HeaderMap::new(), Vec::new())
        .await?;
    if !resp.status().is_success() {
        return Err(s3_status(resp.status().as_u16(), None, key));
    }
    if encoded(resp.headers()) {
        return Err(ApiError::bad_gateway("S3_ERROR", "S3 sent an encoded body"));
    }
    let h = byte_headers(gw, resp.headers(), cache_control(gw, rec), default_type);
    let mut out = Response::new(stream(resp));
    out.headers_mut().extend(h);
    Ok(out)
}

/// `GET|HEAD /v1/images/{id}/chunked/manifest`.
pub async fn manifest(
    gw: Gw,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rec = authorize_read(&gw, &headers, &uri, &id).await?;
    let (key, _) = chunked_keys(&rec)?;
    chunked_object(&gw, method, &rec, &key, "application/json").await
}

/// `GET|HEAD /v1/images/{id}/chunked/chunks/{chunkIndex}`.
pub async fn chunk(
    gw: Gw,
    Path((id, index)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rec = authorize_read(&gw, &headers, &uri, &id).await?;
    let name = chunk_name(&index)?;
    let (_, base) = chunked_keys(&rec)?;
    let key = format!("{base}chunks/{name}");
    chunked_object(&gw, method, &rec, &key, "application/octet-stream").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_start_end_or_open_ranges_parse() {
        assert_eq!(
            parse_range("bytes=0-9"),
            Some(ByteRange {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            parse_range("BYTES=5-"),
            Some(ByteRange {
                start: 5,
                end: None
            })
        );
        for bad in [
            "bytes=-5",
            "bytes=0-1,3-4",
            "bytes=9-1",
            "bytes= 0-1",
            "items=0-1",
            "bytes=a-b",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn chunk_parameters_follow_spec_4_7() {
        assert_eq!(chunk_name("7").unwrap(), "00000007.bin");
        assert_eq!(chunk_name("0007.bin").unwrap(), "0007.bin");
        assert!(chunk_name("100000000").is_err());
        assert!(chunk_name("x.bin").is_err());
        assert!(chunk_name(&"1".repeat(33)).is_err());
    }

    #[test]
    fn etag_lists_respect_quoted_commas() {
        assert_eq!(etag_list(r#""a,b", W/"c""#), vec![r#""a,b""#, r#"W/"c""#]);
    }
}
