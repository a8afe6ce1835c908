//! JSON errors: every error response of the server is `{"error":{"code","message"}}` with a
//! bounded message, `Cache-Control: no-store, no-transform` and `nosniff`. The route's CORS
//! headers are added by the CORS layer like on any other response.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;

/// Longest message put in an error body.
const MAX_MESSAGE: usize = 512;

/// Shortens `text` to at most `max` bytes on a character boundary.
pub fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The error code of a status.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        412 => "precondition_failed",
        413 => "payload_too_large",
        416 => "range_not_satisfiable",
        429 => "too_many_requests",
        503 => "unavailable",
        _ => "internal_error",
    }
}

/// An error response under construction (boxed: errors are the rare path).
#[derive(Debug)]
pub struct ApiError(Box<Response<Body>>);

impl ApiError {
    /// A JSON error with `status` and `message`.
    pub fn new(status: StatusCode, message: &str) -> Self {
        let body = serde_json::json!({
            "error": {"code": code_of(status), "message": bounded(message, MAX_MESSAGE)}
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(Body::from(bytes));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-transform"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        ApiError(Box::new(resp))
    }

    /// Sets a header of the response.
    pub fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers_mut().insert(name, value);
        self
    }

    /// Adds `Accept-Ranges: bytes` (errors of the bytes endpoint).
    pub fn accept_ranges(self, yes: bool) -> Self {
        if yes {
            self.with(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        } else {
            self
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response<Body> {
        *self.0
    }
}
