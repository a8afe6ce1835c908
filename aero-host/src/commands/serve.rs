//! `aero-host serve` and the `[serve]` step of `aero-host run`: resolve the options, bind,
//! print where, and hand over to `aero_serve` until SIGINT/SIGTERM.

use crate::serve_args::ServeArgs;
use aero_plugin_api::backend::Storage;
use aero_plugin_host::storage::{open_storage, StoragePolicy, StorageSpec};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, Context, Result};
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
    crate::runtime::runtime()?.block_on(run(storage, args))?;
    Ok(ExitCode::SUCCESS)
}

/// The log filter of a serve run (RUST_LOG still wins, and an explicit global `--log-level`).
pub fn log_filter(args: &ServeArgs, global: &str, global_default: &str) -> String {
    if global != global_default {
        return global.to_string();
    }
    args.log_filter()
}

/// Raises the open-file soft limit to the hard limit (each connection is a descriptor), and
/// warns when it stays below what `max_connections` needs.
fn raise_fd_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            tracing::debug!("getrlimit: {}", std::io::Error::last_os_error());
            return;
        }
        let was = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::debug!("open-file limit raised from {was} to {}", lim.rlim_cur);
            lim.rlim_cur
        } else {
            tracing::debug!("setrlimit: {}", std::io::Error::last_os_error());
            was
        }
    };
    // Headroom for the listener, storage connections and files.
    if max_connections > 0 && soft < max_connections as u64 + 64 {
        tracing::warn!(
            "open-file limit {soft} leaves too little room for max_connections {max_connections}; \
             accept may fail before the cap applies"
        );
    }
}

/// Serves until SIGINT/SIGTERM, then lets in-flight responses finish.
pub async fn run(storage: Arc<Storage>, args: ServeArgs) -> Result<()> {
    let settings = args.resolve()?;
    raise_fd_limit(settings.max_connections);
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("listening on {}", settings.listen_addr))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!("listening on http://{local}");
    eprintln!("aero-host serve: {} on http://{local}", storage.description);
    let shutdown = async {
        shutdown_signal().await;
        eprintln!("aero-host serve: shutting down, letting responses finish");
    };
    if aero_serve::serve(listener, storage, settings, shutdown).await
        == aero_serve::Stopped::GraceOver
    {
        eprintln!("aero-host serve: grace period over; closing remaining connections");
    }
    Ok(())
}

pub async fn shutdown_signal() {
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
