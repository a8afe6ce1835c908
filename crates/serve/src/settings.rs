//! The server's resolved settings and their one table of defaults.

use aero_access::LeaseKeys;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// CORS mode (SPEC 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsMode {
    /// `Access-Control-Allow-Origin: *`, no credentials.
    Wildcard,
    /// Only these (normalised, see [`normalize_origin`]) origins, with credentials.
    Allowlist(Vec<String>),
}

/// Normalises an origin for comparison: trimmed, no trailing `/`, lowercase.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Everything the server needs, already resolved (the library never reads the environment).
/// [`Settings::default`] is the table of defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Where the binary listens (the library serves the listener it is given). Default `0.0.0.0:8080`.
    pub listen_addr: SocketAddr,
    /// CORS mode. Default wildcard.
    pub cors: CorsMode,
    /// `Cross-Origin-Resource-Policy`: `same-origin`, `same-site` or `cross-origin`. Default `same-site`.
    pub corp: String,
    /// Key prefix of published images, ending in `/`. Default `images/`.
    pub images_prefix: String,
    /// Key of the optional catalog of raw images. Default `manifest.json`.
    pub catalog_key: String,
    /// Whether a missing catalog is an error. Default false.
    pub require_manifest: bool,
    /// Bytes/chunked requests served at once; 0 = unlimited. Default 64.
    pub max_concurrent: usize,
    /// Largest single range in bytes. Default 8 MiB.
    pub max_range_bytes: u64,
    /// Largest chunk object served. Default 64 MiB (the largest chunk a publisher writes).
    pub max_chunk_bytes: u64,
    /// `max-age` of public bytes responses, in seconds. Default 3600.
    pub public_max_age: u64,
    /// `Access-Control-Max-Age` of preflights, in seconds. Default 86400.
    pub preflight_max_age: u64,
    /// Serve the bytes endpoint to Range GETs only. Default false.
    pub require_range: bool,
    /// Do not mount `/metrics`. Default false.
    pub disable_metrics: bool,
    /// Bearer token `/metrics` requires. Default none.
    pub metrics_token: Option<String>,
    /// How long pointers, manifests, the catalog and stats are reused. Default 2 s.
    pub cache_ttl: Duration,
    /// Bytes of served pieces kept in memory; 0 = no piece cache. Default 256 MiB.
    pub cache_bytes: u64,
    /// Files kept open for reading where the storage's objects are local files (`fs`); each
    /// costs one file descriptor; 0 = none (every read opens the object). Default 256.
    pub open_files: usize,
    /// How long in-flight responses may finish after shutdown begins. Default 30 s.
    pub shutdown_grace: Duration,
    /// How long a client may read nothing of a response before it is disconnected (nginx's
    /// `send_timeout`). Default 60 s.
    pub send_timeout: Duration,
    /// How long a connection may send nothing while no response is in flight: before its first
    /// request and between requests (nginx's `client_header_timeout`). Default 20 s.
    pub idle_timeout: Duration,
    /// Open connections at once; more are closed at accept. 0 = unlimited. Default 4096.
    pub max_connections: usize,
    /// Open connections at once from one client address; 0 = unlimited. Default 256.
    pub max_connections_per_ip: usize,
    /// Distinct image ids labelled in `image_bytes_served_total`. Default 100.
    pub metrics_max_ids: usize,
    /// The keys that verify leases; private and shared images need a lease on every data
    /// request. Without keys such images are refused (403). Default none.
    pub lease_keys: Option<Arc<LeaseKeys>>,
    /// `/version`'s `version` and the build-info label. Default this crate's version.
    pub version: String,
    /// `/version`'s `gitSha`. Default `dev`.
    pub git_sha: String,
    /// `/version`'s `builtAt`. Default empty.
    pub built_at: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            cors: CorsMode::Wildcard,
            corp: "same-site".into(),
            images_prefix: "images/".into(),
            catalog_key: "manifest.json".into(),
            require_manifest: false,
            max_concurrent: 64,
            max_range_bytes: 8 * 1024 * 1024,
            max_chunk_bytes: aero_chunked::format::MAX_CHUNK_SIZE,
            public_max_age: 3600,
            preflight_max_age: 86400,
            require_range: false,
            disable_metrics: false,
            metrics_token: None,
            cache_ttl: Duration::from_millis(2000),
            cache_bytes: 256 * 1024 * 1024,
            open_files: 256,
            shutdown_grace: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(20),
            max_connections: 4096,
            max_connections_per_ip: 256,
            metrics_max_ids: 100,
            lease_keys: None,
            version: env!("CARGO_PKG_VERSION").into(),
            git_sha: "dev".into(),
            built_at: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(s.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.max_chunk_bytes, 64 * 1024 * 1024);
        assert_eq!(s.cache_bytes, 256 * 1024 * 1024);
        assert_eq!(s.open_files, 256);
        assert_eq!(s.cors, CorsMode::Wildcard);
        assert_eq!(s.send_timeout, Duration::from_secs(60));
        assert_eq!(s.idle_timeout, Duration::from_secs(20));
        assert_eq!((s.max_connections, s.max_connections_per_ip), (4096, 256));
        assert_eq!(
            normalize_origin(" https://A.example/ "),
            "https://a.example"
        );
    }
}
