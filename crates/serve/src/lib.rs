//! The HTTP server of aero-host as a library: disk images over HTTP from a storage backend —
//! the bytes endpoint with Range, the chunked endpoints of published images, the metadata API,
//! health and metrics (SPEC Part 3 with the differences of Part 0).
//!
//! It takes resolved [`Settings`] (it never reads the environment and never prints) and a
//! bound listener; [`serve`] runs until the shutdown future completes.

mod app;
mod conditional;
mod conn;
mod files;
mod images;
mod layers;
mod metrics;
mod pieces;
mod range;
mod routes;
mod settings;
mod state;

pub use settings::{normalize_origin, CorsMode, Settings};

use aero_plugin_api::backend::Storage;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use layers::limit::Held;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight response finished within the grace period.
    Drained,
    /// The grace period ran out; the remaining connections were closed.
    GraceOver,
}

/// Serves `storage` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight responses finish for up to `settings.shutdown_grace`. Accept errors are logged
/// and retried, so serving itself cannot fail; binding is the caller's.
///
/// A connection over `max_connections` (or `max_connections_per_ip`) is closed at once, without
/// a response; admitted ones get the send and idle timeouts of [`conn::Timed`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    storage: Arc<Storage>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let grace = settings.shutdown_grace;
    let (send_timeout, idle_timeout) = (settings.send_timeout, settings.idle_timeout);
    let caps = conn::Caps::new(settings.max_connections, settings.max_connections_per_ip);
    let app = app::router(state::AppState::new(storage, settings));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(15))
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = caps.admit(peer.ip()) else {
                    tracing::debug!("connection from {peer} closed: connection cap reached");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let in_flight = Arc::new(conn::InFlight::default());
                let io = conn::Timed::new(stream, Arc::clone(&in_flight), send_timeout, idle_timeout);
                let app = app.clone();
                // Each response counts as in flight until its body is sent or dropped.
                let service = hyper::service::service_fn(move |req| {
                    let busy = in_flight.enter();
                    let resp = tower_service::Service::call(&mut app.clone(), req);
                    async move {
                        let resp = resp.await?;
                        Ok::<_, Infallible>(resp.map(|body| Body::new(Held::new(body, busy))))
                    }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => Stopped::Drained,
        _ = tokio::time::sleep(grace) => Stopped::GraceOver,
    }
}
