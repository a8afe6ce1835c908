//! The application: the route table and its layers.

use crate::layers::access::{self, Scoped};
use crate::layers::cors::{self, RouteKind};
use crate::layers::errors::ApiError;
use crate::layers::guard::{self, Shape};
use crate::layers::observe;
use crate::routes::paths::{ChunkedPath, ImagePath, ListPath, MetaPath};
use crate::routes::{api, chunked, image_data, ops};
use crate::state::Shared;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, MethodRouter};
use axum::Router;

/// A route of shape `S`: its guard, then its CORS headers on every response.
fn shaped<S: Shape, H, T>(st: &Shared, handler: H) -> MethodRouter<Shared>
where
    H: Handler<T, Shared>,
    T: 'static,
{
    outer::<S>(st, any(handler))
}

/// A route of shape `S` that names an image: like [`shaped`], with the image's access check
/// between the guard and the handler.
fn scoped<S: Scoped, H, T>(st: &Shared, handler: H) -> MethodRouter<Shared>
where
    H: Handler<T, Shared>,
    T: 'static,
{
    let inner = any(handler).layer(from_fn_with_state(st.clone(), access::layer::<S>));
    outer::<S>(st, inner)
}

/// `route` behind the guard of shape `S`, with its CORS headers on every response.
fn outer<S: Shape>(st: &Shared, route: MethodRouter<Shared>) -> MethodRouter<Shared> {
    route
        .layer(from_fn_with_state(st.limit.clone(), guard::layer::<S>))
        .layer(from_fn_with_state((st.cors.clone(), S::KIND), cors::layer))
}

/// A `GET` route with the CORS headers of `kind` (other methods get the bare 405).
fn plain<H, T>(st: &Shared, kind: RouteKind, handler: H) -> MethodRouter<Shared>
where
    H: Handler<T, Shared>,
    T: 'static,
{
    get(handler).route_layer(from_fn_with_state((st.cors.clone(), kind), cors::layer))
}

/// The application over `st`.
pub fn router(st: Shared) -> Router {
    let data = scoped::<ImagePath, _, _>(&st, image_data::handler);
    let chunked = scoped::<ChunkedPath, _, _>(&st, chunked::handler);
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
            scoped::<MetaPath, _, _>(&st, api::meta),
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
        .route_layer(from_fn_with_state(st.metrics.clone(), observe::layer))
        .with_state(st)
}
