//! The application: shared state, the route table and its layers.

use crate::images::Store;
use crate::layers::cors::{self, Cors, RouteKind};
use crate::layers::errors::ApiError;
use crate::layers::limit::Limit;
use crate::layers::{guard, observe};
use crate::metrics::Metrics;
use crate::pieces::Pieces;
use crate::routes::paths::{ChunkedPath, ImagePath, ListPath, MetaPath, Shape};
use crate::routes::{api, chunked, image_data, ops};
use crate::settings::Settings;
use aero_plugin_api::backend::Storage;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use std::sync::Arc;

/// What every handler and layer shares.
pub struct AppState {
    /// The settings.
    pub settings: Settings,
    /// Image lookups.
    pub store: Store,
    /// Reading pieces of objects, through the piece cache.
    pub pieces: Pieces,
    /// The CORS policy.
    pub cors: Cors,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The concurrency cap.
    pub limit: Limit,
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The state of a server over `storage`.
    pub fn new(storage: Arc<Storage>, settings: Settings) -> Shared {
        let metrics = Arc::new(Metrics::new(&settings.version, settings.metrics_max_ids));
        Arc::new(AppState {
            store: Store::new(Arc::clone(&storage), &settings),
            pieces: Pieces::new(storage, settings.cache_bytes, Arc::clone(&metrics)),
            cors: Cors::new(
                settings.cors.clone(),
                &settings.corp,
                settings.preflight_max_age,
            ),
            metrics,
            limit: Limit::new(settings.max_concurrent),
            settings,
        })
    }
}

/// A route of shape `S`: its guard, then its CORS headers on every response.
fn shaped<S: Shape, H, T>(st: &Shared, handler: H) -> MethodRouter<Shared>
where
    H: Handler<T, Shared>,
    T: 'static,
{
    any(handler)
        .layer(from_fn_with_state(st.clone(), guard::layer::<S>))
        .layer(from_fn_with_state((st.clone(), S::KIND), cors::layer))
}

/// A `GET` route with the CORS headers of `kind` (other methods get the bare 405).
fn plain<H, T>(st: &Shared, kind: RouteKind, handler: H) -> MethodRouter<Shared>
where
    H: Handler<T, Shared>,
    T: 'static,
{
    get(handler).route_layer(from_fn_with_state((st.clone(), kind), cors::layer))
}

/// The application over `st`.
pub fn router(st: Shared) -> Router {
    let data = shaped::<ImagePath, _, _>(&st, image_data::handler);
    let chunked = shaped::<ChunkedPath, _, _>(&st, chunked::handler);
    let mut r = Router::new()
        .route("/health", plain(&st, RouteKind::Health, ops::health))
        .route("/healthz", plain(&st, RouteKind::Health, ops::healthz))
        .route("/ready", plain(&st, RouteKind::Health, ops::ready))
        .route("/readyz", plain(&st, RouteKind::Health, ops::ready))
        .route("/version", plain(&st, RouteKind::Health, ops::version))
        .route("/v1/images", shaped::<ListPath, _, _>(&st, api::list))
        .route("/v1/images/{image_id}", data.clone())
        .route("/v1/images/{image_id}/data", data)
        .route(
            "/v1/images/{image_id}/meta",
            shaped::<MetaPath, _, _>(&st, api::meta),
        )
        .route(
            "/v1/images/{image_id}/chunked/manifest.json",
            chunked.clone(),
        )
        .route("/v1/images/{image_id}/chunked/manifest", chunked.clone())
        .route(
            "/v1/images/{image_id}/chunked/chunks/{chunk_name}",
            chunked.clone(),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/manifest.json",
            chunked.clone(),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/manifest",
            chunked.clone(),
        )
        .route(
            "/v1/images/{image_id}/chunked/{version}/chunks/{chunk_name}",
            chunked,
        );
    if !st.settings.disable_metrics {
        r = r.route("/metrics", plain(&st, RouteKind::Data, ops::metrics));
    }
    r.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .route_layer(from_fn_with_state(st.clone(), observe::layer))
        .with_state(st)
}
