//! One handler per route shape. The layers have already checked the path, the method and the
//! concurrency cap, answered preflights, and add the CORS headers to whatever a handler returns.

pub mod api;
pub mod chunked;
pub mod image_data;
pub mod ops;
pub mod paths;

use crate::conditional::has_credentials;
use crate::layers::errors::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// A handler's result: the response, or the error to answer.
pub type Reply<T> = Result<T, ApiError>;

/// A response with `status`, `headers` and `body`.
pub fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Cache-Control of a data response (SPEC 3.6, 3.7): private for private images and for
/// requests with credentials; else public for `max_age` seconds, or a year and immutable.
pub fn cache_control(req: &HeaderMap, public: bool, immutable: bool, max_age: u64) -> HeaderValue {
    if !public || has_credentials(req) {
        return HeaderValue::from_static("private, no-store, no-transform");
    }
    if immutable {
        return HeaderValue::from_static("public, max-age=31536000, immutable, no-transform");
    }
    HeaderValue::from_str(&format!("public, max-age={max_age}, no-transform"))
        .unwrap_or(HeaderValue::from_static("no-store, no-transform"))
}

/// The headers of a served body: its type, `identity` encoding, `nosniff` and its length.
pub fn content_headers(headers: &mut HeaderMap, content_type: &'static str, len: u64) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// A JSON response (an empty body for `HEAD`).
pub fn json(
    status: StatusCode,
    value: &serde_json::Value,
    mut headers: HeaderMap,
    head: bool,
) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    respond(
        status,
        headers,
        if head {
            Body::empty()
        } else {
            Body::from(bytes)
        },
    )
}
