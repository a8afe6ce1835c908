//! Shared server state and response helpers.

use super::cors::{Cors, RouteKind};
use super::errors::error_response;
use super::images::{Store, StoreError};
use super::metrics::Metrics;
use super::settings::Settings;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What every handler shares.
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    pub cors: Cors,
    pub metrics: Arc<Metrics>,
    permits: Option<Arc<Semaphore>>,
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

/// `Err(response)` short-circuits a handler.
pub type Reply<T> = Result<T, Response<Body>>;

impl AppState {
    /// State over `store`.
    pub fn new(settings: Settings, store: Store) -> Self {
        let cors = Cors::new(
            settings.cors.clone(),
            &settings.corp,
            settings.preflight_max_age,
        );
        let metrics = Arc::new(Metrics::new(&settings.version, settings.metrics_max_ids));
        let permits = (settings.max_concurrent > 0)
            .then(|| Arc::new(Semaphore::new(settings.max_concurrent)));
        AppState {
            settings,
            store,
            cors,
            metrics,
            permits,
        }
    }

    /// An error response with the route's CORS headers (and `Accept-Ranges` when asked).
    pub fn fail(
        &self,
        req: &HeaderMap,
        kind: RouteKind,
        status: StatusCode,
        message: &str,
        accept_ranges: bool,
    ) -> Response<Body> {
        let mut resp = error_response(status, message);
        self.cors.apply(req, resp.headers_mut(), kind);
        if accept_ranges {
            resp.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        resp
    }

    /// A permit of the concurrency cap, or the 429 response.
    pub fn permit(
        &self,
        req: &HeaderMap,
        accept_ranges: bool,
    ) -> Reply<Option<OwnedSemaphorePermit>> {
        match &self.permits {
            None => Ok(None),
            Some(s) => Arc::clone(s).try_acquire_owned().map(Some).map_err(|_| {
                self.fail(
                    req,
                    RouteKind::Data,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many concurrent requests",
                    accept_ranges,
                )
            }),
        }
    }

    /// The response for a storage error on a data route.
    pub fn store_fail(
        &self,
        req: &HeaderMap,
        kind: RouteKind,
        err: StoreError,
        accept_ranges: bool,
    ) -> Response<Body> {
        err.count(&self.metrics);
        match err {
            StoreError::NotFound => {
                self.fail(req, kind, StatusCode::NOT_FOUND, "not found", accept_ranges)
            }
            StoreError::Manifest(m) | StoreError::Io(m) => {
                tracing::error!("storage: {m}");
                self.fail(
                    req,
                    kind,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &m,
                    accept_ranges,
                )
            }
        }
    }

    /// A preflight response (204).
    pub fn preflight(&self, req: &HeaderMap, kind: RouteKind) -> Response<Body> {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        self.cors.preflight(req, resp.headers_mut(), kind);
        resp
    }

    /// Cache-Control of a data response.
    pub fn cache_control(&self, req: &HeaderMap, public: bool, immutable: bool) -> HeaderValue {
        if !public || super::conditional::has_credentials(req) {
            return HeaderValue::from_static("private, no-store, no-transform");
        }
        if immutable {
            return HeaderValue::from_static("public, max-age=31536000, immutable, no-transform");
        }
        HeaderValue::from_str(&format!(
            "public, max-age={}, no-transform",
            self.settings.public_max_age
        ))
        .unwrap_or(HeaderValue::from_static("no-store, no-transform"))
    }
}

/// The raw (still percent-encoded) path segments after the leading `/`.
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// A 405 for methods a route does not serve.
pub fn method_not_allowed(st: &AppState, req: &HeaderMap, kind: RouteKind) -> Response<Body> {
    let mut resp = st.fail(
        req,
        kind,
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        false,
    );
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    resp
}
