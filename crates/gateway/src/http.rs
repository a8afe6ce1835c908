//! What every request gets (SPEC 4.2): URLs over the limit are refused (414), any `OPTIONS` is
//! a preflight answer (204), and every response carries the CORS headers. Also the two
//! helpers routes share: reading a bounded JSON body, and the absolute self URL.

use crate::error::{ApiError, ApiResult};
use crate::Gateway;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Headers browsers may read (SPEC 4.2).
const EXPOSE_HEADERS: &str =
    "accept-ranges,content-range,content-length,content-encoding,etag,last-modified";
/// Methods a preflight allows.
const ALLOW_METHODS: &str = "GET,HEAD,POST,PATCH,DELETE,OPTIONS";
/// Request headers a preflight allows when the request's own list is not usable.
const DEFAULT_ALLOW_HEADERS: &str = "range,if-range,content-type,x-user-id,authorization";
/// Longest `Access-Control-Request-Headers` echoed back.
const MAX_ECHOED_HEADERS: usize = 4096;

/// The global layer: 414, preflight, CORS.
pub async fn global(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let settings = &gateway.settings;
    let url_len = request.uri().to_string().len();
    let mut response = if url_len > settings.max_url_bytes {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URL_TOO_LONG",
            format!(
                "the request URL is {url_len} bytes, over the limit of {}",
                settings.max_url_bytes
            ),
        )
        .into_response()
    } else if request.method() == Method::OPTIONS {
        preflight(request.headers())
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    let origin = &settings.cors_allow_origin;
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    if origin != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

fn preflight(request: &HeaderMap) -> Response {
    let asked = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= MAX_ECHOED_HEADERS
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~, \t".contains(&b))
        });
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked
            .and_then(|v| HeaderValue::from_str(v).ok())
            .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOW_HEADERS)),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.append(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

/// Reads a JSON body of at most `limit` bytes: 413 when larger, 400 when it is not the
/// expected JSON. An empty body reads as `None`.
pub async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> ApiResult<Option<T>> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is over the limit of {limit} bytes"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Like [`json_body`], but the body is required.
pub async fn required_json<T: DeserializeOwned>(body: Body, limit: usize) -> ApiResult<T> {
    json_body(body, limit)
        .await?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required"))
}

/// The absolute URL of `path` on this gateway as the client reached it (SPEC 4.5):
/// `X-Forwarded-Host` else `Host` (first value), `X-Forwarded-Proto` (`http`/`https`) else
/// `http`; a host that does not look like one gives the path alone.
pub fn self_url(headers: &HeaderMap, path: &str) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = first("x-forwarded-host").or_else(|| first("host"));
    let host = host.filter(|h| {
        h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    let proto = match first("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    match host {
        Some(host) => format!("{proto}://{host}{path}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_urls_follow_the_forwarded_headers_and_drop_junk_hosts() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("gw.local:3000"));
        assert_eq!(self_url(&h, "/x"), "http://gw.local:3000/x");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("cdn.example, inner"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(self_url(&h, "/x"), "https://cdn.example/x");
        h.insert("x-forwarded-host", HeaderValue::from_static("bad/host"));
        assert_eq!(self_url(&h, "/x"), "/x");
    }
}
