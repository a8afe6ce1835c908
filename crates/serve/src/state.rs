//! What every handler shares.

use crate::images::Store;
use crate::layers::cors::Cors;
use crate::layers::limit::Limit;
use crate::metrics::Metrics;
use crate::pieces::Pieces;
use crate::settings::Settings;
use aero_plugin_api::backend::Storage;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    /// The settings.
    pub settings: Settings,
    /// Image lookups.
    pub store: Store,
    /// Reading pieces of objects, through the piece cache.
    pub pieces: Pieces,
    /// The CORS policy.
    pub cors: Arc<Cors>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The concurrency cap.
    pub limit: Arc<Limit>,
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The state of a server over `storage`.
    pub fn new(storage: Arc<Storage>, settings: Settings) -> Shared {
        let metrics = Arc::new(Metrics::new(&settings.version, settings.metrics_max_ids));
        Arc::new(AppState {
            store: Store::new(Arc::clone(&storage), &settings),
            pieces: Pieces::new(
                storage,
                settings.cache_bytes,
                settings.open_files,
                Arc::clone(&metrics),
            ),
            cors: Arc::new(Cors::new(
                settings.cors.clone(),
                &settings.corp,
                settings.preflight_max_age,
            )),
            metrics,
            limit: Arc::new(Limit::new(settings.max_concurrent)),
            settings,
        })
    }
}
