//! The gateway's errors: every one becomes `{"error":{"code","message"}}` with its status
//! (SPEC 4.1); for statuses ≥ 500 the message is always `Internal Server Error` and the cause
//! goes to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Longest message put in an error body.
const MAX_MESSAGE: usize = 512;

/// An error answer of a route.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`BAD_REQUEST`, `NOT_FOUND`, `INVALID_STATE`, …).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Extra headers (`Content-Range` of a 416).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Result of a route.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 409 `INVALID_STATE`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "INVALID_STATE", message)
    }

    /// 409 `CONFLICT`: another writer changed the record first.
    pub fn conflict(id: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("image {id} was changed by another request; read it again and retry"),
        )
    }

    /// 500 `INTERNAL`; `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", String::new())
    }

    /// 502 from a failed S3 call; `cause` is logged, never sent.
    pub fn bad_gateway(code: &'static str, cause: impl std::fmt::Display) -> Self {
        tracing::error!("S3 error: {cause}");
        Self::new(StatusCode::BAD_GATEWAY, code, String::new())
    }

    /// Adds a header.
    pub fn with(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.as_u16() >= 500 {
            "Internal Server Error"
        } else {
            bounded(&self.message, MAX_MESSAGE)
        };
        let body = serde_json::json!({"error": {"code": self.code, "message": message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-transform"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        resp
    }
}

/// Shortens `text` to at most `max` bytes on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Conflict(id) => ApiError::conflict(&id),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::s3::S3Error> for ApiError {
    fn from(e: crate::s3::S3Error) -> Self {
        ApiError::bad_gateway("S3_ERROR", e)
    }
}
