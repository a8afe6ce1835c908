//! Request observability (SPEC 3.12), on matched routes: the request id (the client's
//! `x-request-id` when 1 to 128 characters after trimming, else a new UUIDv4) echoed on every
//! response, one log line per request (with `x-aero-user-id`), and the request metrics.

use super::errors::bounded;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Response};
use axum::middleware::Next;
use std::sync::Arc;
use std::time::Instant;

/// The request's id: the client's, or a new one.
fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| (1..=128).contains(&v.len()))
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4();
            let mut buf = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
                .expect("a UUID is a valid header value")
        })
}

/// `{image_id}` → `:image_id`, as the metric labels spell routes.
fn route_label(path: &str) -> String {
    path.replace('{', ":").replace('}', "")
}

/// The observability middleware.
pub async fn layer(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| route_label(m.as_str()))
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let id = request_id(&req);
    let user = req
        .headers()
        .get("x-aero-user-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| bounded(v, 128).to_string());
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    metrics.request(&route, method.as_str(), status, elapsed);
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(resp.body()).exact())
        .unwrap_or(0);
    tracing::info!(
        request_id = id.to_str().unwrap_or(""),
        route = %route,
        method = %method,
        status,
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        user_id = user.as_deref().unwrap_or(""),
        "request"
    );
    resp.headers_mut().insert("x-request-id", id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_client_id_and_makes_one_otherwise() {
        let with = |v: &str| {
            let req = Request::builder()
                .header("x-request-id", v)
                .body(Body::empty())
                .unwrap();
            request_id(&req)
        };
        assert_eq!(with("  abc  "), "abc");
        let made = with(&"x".repeat(129));
        let text = made.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
    }
}
