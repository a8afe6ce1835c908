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

/// Entry points for the fuzz targets (`fuzz/`, feature `fuzzing`): the request-header parsers
/// the routes use, callable on their own. Not part of the server's API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::range::{
        parse as parse_range, resolve as resolve_range, RangeError, Spec, MAX_HEADER_LEN, MAX_SPECS,
    };

    use crate::conditional::{if_range_satisfied, revalidate, Validators};
    use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
    use std::time::SystemTime;

    /// What a request's conditional headers decide for one resource.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Conditionals {
        /// The answer is 304 Not Modified (If-None-Match, else If-Modified-Since).
        pub not_modified: bool,
        /// If-Range (when present) lets a Range be honoured.
        pub if_range: bool,
        /// The `ETag` header the answer carries.
        pub etag: Option<String>,
        /// The `Last-Modified` header the answer carries.
        pub last_modified: Option<String>,
    }

    /// Evaluates `request`'s headers (name, raw value; values a client could not send are
    /// skipped) against a resource with `etag` and `last_modified`, as the routes do.
    pub fn conditionals(
        request: &[(&str, &[u8])],
        etag: &str,
        last_modified: Option<SystemTime>,
    ) -> Conditionals {
        let mut req = HeaderMap::new();
        for (name, value) in request {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                req.append(name, value);
            }
        }
        let v = Validators {
            etag: etag.to_string(),
            last_modified,
        };
        let mut out = HeaderMap::new();
        let not_modified = revalidate(&req, &mut out, &v);
        let text = |name| {
            out.get(name)
                .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Conditionals {
            not_modified,
            if_range: if_range_satisfied(&req, &v),
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
        }
    }
}
