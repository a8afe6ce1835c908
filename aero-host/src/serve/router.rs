//! Routes and the request middleware (request id, logs, metrics).

use super::errors::error_response;
use super::state::Shared;
use super::{api, bytes, chunked};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::middleware::{self, Next};
use axum::routing::{any, get};
use axum::Router;
use std::time::Instant;

/// The application.
pub fn router(st: Shared) -> Router {
    let mut r = Router::new()
        .route("/health", get(api::health))
        .route("/healthz", get(api::healthz))
        .route("/ready", get(api::ready))
        .route("/readyz", get(api::ready))
        .route("/version", get(api::version))
        .route("/v1/images", any(api::list))
        .route("/v1/images/{image_id}", any(bytes::handler))
        .route("/v1/images/{image_id}/data", any(bytes::handler))
        .route("/v1/images/{image_id}/meta", any(api::meta))
        .route(
            "/v1/images/{image_id}/chunked/manifest.json",
            any(chunked::handler),
        )
        .route(
            "/v1/images/{image_id}/chunked/manifest",
            any(chunked::handler),
        )
        .route(
            "/v1/images/{image_id}/chunked/chunks/{chunk_name}",
            any(chunked::handler),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/manifest.json",
            any(chunked::handler),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/manifest",
            any(chunked::handler),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/chunks/{chunk_name}",
            any(chunked::handler),
        );
    if !st.settings.disable_metrics {
        r = r.route("/metrics", get(api::metrics));
    }
    r.fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such route") })
        .route_layer(middleware::from_fn_with_state(st.clone(), observe))
        .with_state(st)
}

fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| (1..=128).contains(&v.len()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let a = fastrand::u128(..);
            let b = (a & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
            let s = format!("{b:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &s[..8],
                &s[8..12],
                &s[12..16],
                &s[16..20],
                &s[20..]
            )
        })
}

/// `{image_id}` → `:image_id`, as the metric labels spell routes.
fn route_label(path: &str) -> String {
    path.replace('{', ":").replace('}', "")
}

async fn observe(State(st): State<Shared>, req: Request, next: Next) -> Response<Body> {
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
        .map(|v| super::errors::bounded(v, 128).to_string());
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    st.metrics.request(&route, method.as_str(), status, elapsed);
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(resp.body()).exact())
        .unwrap_or(0);
    tracing::info!(
        request_id = %id,
        route = %route,
        method = %method,
        status,
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        user_id = user.as_deref().unwrap_or(""),
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
