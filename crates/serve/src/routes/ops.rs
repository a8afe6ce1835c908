//! Health, readiness, version (SPEC 3.11) and metrics (3.12).

use super::{json, respond};
use crate::layers::errors::ApiError;
use crate::state::Shared;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use subtle::ConstantTimeEq;

fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

/// `/health`.
pub async fn health() -> Response<Body> {
    let mut headers = no_store();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    respond(StatusCode::OK, headers, Body::from("ok\n"))
}

/// `/healthz`.
pub async fn healthz() -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
        no_store(),
        false,
    )
}

/// `/ready`, `/readyz`: the backend answers and the catalog parses.
pub async fn ready(State(st): State<Shared>) -> Response<Body> {
    let headers = no_store();
    match st.store.list().await {
        Ok(_) => json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
            headers,
            false,
        ),
        Err(e) => {
            tracing::warn!("not ready: {e:?}");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "error"}),
                headers,
                false,
            )
        }
    }
}

/// `/version`.
pub async fn version(State(st): State<Shared>) -> Response<Body> {
    let s = &st.settings;
    json(
        StatusCode::OK,
        &serde_json::json!({"version": s.version, "gitSha": s.git_sha, "builtAt": s.built_at}),
        no_store(),
        false,
    )
}

/// `/metrics`, behind the bearer token when one is set.
pub async fn metrics(State(st): State<Shared>, req: Request) -> Result<Response<Body>, ApiError> {
    if let Some(token) = &st.settings.metrics_token {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b)));
        let parts: Vec<&str> = auth
            .map(|a| a.split_whitespace().collect())
            .unwrap_or_default();
        if parts.len() != 2 || !parts[0].eq_ignore_ascii_case("bearer") {
            return Err(
                ApiError::new(StatusCode::UNAUTHORIZED, "bearer token required")
                    .with(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
            );
        }
        if !bool::from(parts[1].as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong token"));
        }
    }
    let mut headers = no_store();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    let text = st.metrics.render(st.pieces.cached_bytes());
    Ok(respond(StatusCode::OK, headers, Body::from(text)))
}
