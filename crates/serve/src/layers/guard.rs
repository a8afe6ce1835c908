//! The guard of a route shape, in SPEC order: the path rule, the methods (`GET`, `HEAD`,
//! `OPTIONS`; else 405), the concurrency cap where it applies (429), then preflights are
//! answered. The parsed path travels to the handler in the request's extensions ([`Target`]);
//! the permit is held by the response body until it is fully sent or dropped.

use super::cors::{preflight_answer, RouteKind};
use super::errors::ApiError;
use super::limit::{Held, Limit};
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use std::sync::Arc;

/// A route shape: its path rule and what the guard does for it.
pub trait Shape: Clone + Send + Sync + 'static {
    /// Which CORS headers its responses carry.
    const KIND: RouteKind;
    /// Whether the concurrency cap applies to it.
    const LIMITED: bool;
    /// Whether its 429 carries `Accept-Ranges: bytes`.
    const RANGES: bool;
    /// Parses the raw request path, or the error to answer.
    fn parse(path: &str) -> Result<Self, ApiError>;
}

/// The guard middleware of shape `S`.
pub async fn layer<S: Shape>(
    State(limit): State<Arc<Limit>>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let target = match S::parse(req.uri().path()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let method = req.method();
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            .with(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            )
            .into_response();
    }
    let permit = if S::LIMITED {
        match limit.acquire() {
            Ok(p) => p,
            Err(e) => return e.accept_ranges(S::RANGES).into_response(),
        }
    } else {
        None
    };
    if method == Method::OPTIONS {
        return preflight_answer();
    }
    req.extensions_mut().insert(Target(target));
    let resp = next.run(req).await;
    match permit {
        Some(p) => resp.map(|body| Body::new(Held::new(body, p))),
        None => resp,
    }
}

/// The parsed path of a request that passed the guard of shape `S` (an extractor).
#[derive(Clone)]
pub struct Target<S>(pub S);

impl<S: Shape, St: Send + Sync> FromRequestParts<St> for Target<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, ApiError> {
        parts.extensions.remove::<Target<S>>().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "route without its guard")
        })
    }
}
