//! The upload gateway of aero-host as a library: browsers upload disk images in parts straight
//! to S3 through presigned URLs, image records live in SQLite or PostgreSQL, and completed
//! uploads are converted on the server into the chunked format, published beside the images
//! `aero-host serve` streams (SPEC Parts 4 and 5).
//!
//! It takes resolved [`Settings`] (it never reads the environment and never prints), an opened
//! [`Db`], the bucket's [`Storage`] and the format plugins; [`serve`] runs the HTTP routes and
//! the conversion jobs until the shutdown future completes.

pub mod auth;
mod authz;
mod convert;
pub mod db;
mod error;
pub mod grants;
mod http;
mod proxy;
mod record;
mod routes;
pub mod s3;
pub mod settings;
mod sharing;
mod source;

pub use convert::MAX_ATTEMPTS;
pub use db::{Db, DbError};
pub use error::ApiError;
pub use record::{ImageRecord, State};
pub use settings::{AuthMode, ImageCacheControl, S3Settings, Settings};

use aero_plugin_api::backend::Storage;
use aero_plugin_api::Registry;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Everything the routes and the jobs share.
pub struct Gateway {
    settings: Settings,
    db: Db,
    s3: s3::S3Client,
    storage: Arc<Storage>,
    formats: Registry,
    /// This instance's name in job claims.
    instance: String,
    conversions: Arc<Semaphore>,
}

impl Gateway {
    /// A gateway over `db`, the bucket `storage` (opened by the caller for `settings.s3`) and
    /// the `formats` conversions may detect.
    pub fn new(
        settings: Settings,
        db: Db,
        storage: Arc<Storage>,
        formats: Registry,
    ) -> Result<Arc<Self>, String> {
        settings.validate()?;
        let s3 = s3::S3Client::new(&settings.s3).map_err(|e| e.to_string())?;
        let conversions = Arc::new(Semaphore::new(settings.max_conversions));
        Ok(Arc::new(Gateway {
            settings,
            db,
            s3,
            storage,
            formats,
            instance: uuid::Uuid::new_v4().to_string(),
            conversions,
        }))
    }
}

/// The route table: path, method, handler. The OpenAPI document is checked against it.
fn table() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Gateway>>)> {
    use routes::*;
    let get = MethodFilter::GET;
    let head = MethodFilter::HEAD;
    let post = MethodFilter::POST;
    vec![
        ("/health", "get", on(get, health)),
        ("/healthz", "get", on(get, health)),
        ("/readyz", "get", on(get, readyz)),
        ("/openapi.json", "get", on(get, openapi)),
        ("/v1/images", "get", on(get, list)),
        ("/v1/images", "post", on(post, create)),
        ("/v1/images/{imageId}", "get", on(get, get_image)),
        (
            "/v1/images/{imageId}",
            "patch",
            on(MethodFilter::PATCH, sharing::patch),
        ),
        (
            "/v1/images/{imageId}",
            "delete",
            on(MethodFilter::DELETE, delete_image),
        ),
        (
            "/v1/images/{imageId}/upload-url",
            "post",
            on(post, upload_url),
        ),
        ("/v1/images/{imageId}/upload", "get", on(get, upload_status)),
        ("/v1/images/{imageId}/complete", "post", on(post, complete)),
        ("/v1/images/{imageId}/abort", "post", on(post, abort)),
        ("/v1/images/{imageId}/metadata", "get", on(get, metadata)),
        (
            "/v1/images/{imageId}/stream-url",
            "get",
            on(get, stream_url),
        ),
        (
            "/v1/images/{imageId}/share-links",
            "post",
            on(post, sharing::create_link),
        ),
        (
            "/v1/images/{imageId}/share-links",
            "get",
            on(get, sharing::list_links),
        ),
        (
            "/v1/images/{imageId}/share-links/{linkId}",
            "delete",
            on(MethodFilter::DELETE, sharing::revoke_link),
        ),
        (
            "/v1/images/{imageId}/lease",
            "post",
            on(post, sharing::lease),
        ),
        ("/v1/images/{imageId}/range", "get", on(get, proxy::range)),
        ("/v1/images/{imageId}/range", "head", on(head, proxy::range)),
        (
            "/v1/images/{imageId}/chunked/manifest",
            "get",
            on(get, proxy::manifest),
        ),
        (
            "/v1/images/{imageId}/chunked/manifest",
            "head",
            on(head, proxy::manifest),
        ),
        (
            "/v1/images/{imageId}/chunked/chunks/{chunkIndex}",
            "get",
            on(get, proxy::chunk),
        ),
        (
            "/v1/images/{imageId}/chunked/chunks/{chunkIndex}",
            "head",
            on(head, proxy::chunk),
        ),
    ]
}

/// Every (method, path) the gateway serves, methods in lowercase as OpenAPI writes them.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (method, path))
        .collect()
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// The gateway's HTTP routes with the global layer.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut by_path: Vec<(&str, MethodRouter<Arc<Gateway>>)> = Vec::new();
    for (path, _, handler) in table() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => {
                *methods = std::mem::replace(methods, MethodRouter::new()).merge(handler)
            }
            None => by_path.push((path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, methods) in by_path {
        router = router.route(path, methods.fallback(routes::wrong_method));
    }
    router
        .fallback(routes::no_route)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            http::global,
        ))
        .with_state(gateway)
}

/// Serves the routes on `listener` and runs the conversion jobs until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = tokio::spawn(convert::run_jobs(Arc::clone(&gateway), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }));
    let app = router(gateway);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = jobs.await;
    result
}
