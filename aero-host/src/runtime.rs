//! The async runtime of the commands that need one.

use anyhow::{Context, Result};

/// The multi-threaded tokio runtime; `AERO_TOKIO_WORKER_THREADS` sizes it (an invalid value
/// warns and the default is used).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(threads) = std::env::var("AERO_TOKIO_WORKER_THREADS") {
        match threads.parse::<usize>() {
            Ok(n) if n > 0 => {
                builder.worker_threads(n);
            }
            _ => tracing::warn!("AERO_TOKIO_WORKER_THREADS='{threads}' is not a positive integer; using the default"),
        }
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}
