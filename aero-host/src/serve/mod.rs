//! `aero-host serve`: disk images over HTTP from the configured storage backend — the bytes
//! endpoint with Range, and the chunked endpoints of published images (SPEC Part 3, Part 0).

// Handlers short-circuit with `Err(response)`; a response is large by nature.
#![allow(clippy::result_large_err)]

mod api;
mod body;
mod bytes;
mod chunked;
mod conditional;
mod cors;
mod errors;
mod ids;
mod images;
mod metrics;
mod piece_cache;
mod range;
mod router;
mod settings;
mod state;

pub use settings::ServeArgs;

use aero_plugin_api::backend::Storage;
use aero_plugin_host::storage::{open_storage, StoragePolicy, StorageSpec};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How storage is used while serving: few retries, bounded waits.
pub fn storage_policy() -> StoragePolicy {
    StoragePolicy {
        attempts: 2,
        timeout: Duration::from_secs(30),
    }
}

/// `aero-host serve`.
pub fn command(
    args: ServeArgs,
    cli_storage: Option<&str>,
    libs: &LibrarySelection,
) -> Result<ExitCode> {
    let uri = cli_storage.ok_or_else(|| {
        anyhow!("serve needs a storage: --storage fs:PATH|s3://BUCKET?... (or AERO_STORAGE)")
    })?;
    let spec = StorageSpec::parse_uri(uri)?;
    let catalogue = PluginSet::load(libs)?;
    let storage = Arc::new(open_storage(&catalogue, &spec, storage_policy())?);
    crate::commands::runtime()?.block_on(run(storage, args))?;
    Ok(ExitCode::SUCCESS)
}

/// The log filter of a serve run (RUST_LOG still wins, and an explicit global `--log-level`).
pub fn log_filter(args: &ServeArgs, global: &str, global_default: &str) -> String {
    if global != global_default {
        return global.to_string();
    }
    args.log_filter()
}

/// Serves until SIGINT/SIGTERM, then lets in-flight responses finish.
pub async fn run(storage: Arc<Storage>, args: ServeArgs) -> Result<()> {
    let settings = args.resolve()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("listening on {}", settings.listen_addr))?;
    let local = listener.local_addr()?;
    let grace = settings.shutdown_grace;
    let store = images::Store::new(Arc::clone(&storage), &settings);
    let state = Arc::new(state::AppState::new(settings, store));
    let app = router::router(state);
    // Tests and scripts read this line to learn the port.
    println!("listening on http://{local}");
    eprintln!("aero-host serve: {} on http://{local}", storage.description);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(15))
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection: {e}");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    eprintln!("aero-host serve: shutting down, letting responses finish");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            eprintln!("aero-host serve: grace period over; closing remaining connections");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
