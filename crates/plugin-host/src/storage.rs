//! Opening a storage: a backend name and settings (from a `[storage]` table or a storage
//! URI), through the backend plugins, with opendal's retry, timeout and logging layers.

use crate::{Error, PluginSet, Result};
use aero_plugin_api::backend::{build_storage, opendal, Settings, Storage};
use std::time::Duration;

fn invalid(message: String) -> Error {
    Error::StorageUri(message)
}

/// A storage selection: a backend name and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    /// Backend name (`fs`, `s3`, `memory`).
    pub kind: String,
    /// The backend's settings.
    pub settings: Settings,
}

impl StorageSpec {
    /// Parses `fs:PATH`, `memory:` or `s3://BUCKET[/ROOT]?endpoint=URL&region=R&force_path_style=true`.
    pub fn parse_uri(uri: &str) -> Result<Self> {
        let mut settings = Settings::new();
        if let Some(path) = uri.strip_prefix("fs:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid(format!(
                    "storage URI '{uri}' needs a path: fs:PATH"
                )));
            }
            settings.insert("root".into(), path.into());
            return Ok(StorageSpec {
                kind: "fs".into(),
                settings,
            });
        }
        if uri == "memory:" || uri == "memory://" {
            return Ok(StorageSpec {
                kind: "memory".into(),
                settings,
            });
        }
        if uri.starts_with("s3://") {
            let url = url::Url::parse(uri)
                .map_err(|e| invalid(format!("storage URI '{uri}' is not a valid URL: {e}")))?;
            let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                invalid(format!(
                    "storage URI '{uri}' names no bucket: s3://BUCKET[/ROOT]"
                ))
            })?;
            settings.insert("bucket".into(), bucket.into());
            let root = url.path().trim_matches('/');
            if !root.is_empty() {
                settings.insert("root".into(), root.into());
            }
            for (key, value) in url.query_pairs() {
                if settings
                    .insert(key.to_string(), value.to_string())
                    .is_some()
                {
                    return Err(invalid(format!("storage URI '{uri}' sets '{key}' twice")));
                }
            }
            return Ok(StorageSpec {
                kind: "s3".into(),
                settings,
            });
        }
        if let Some((scheme, _)) = uri.split_once(':') {
            let mut settings = Settings::new();
            let rest = &uri[scheme.len() + 1..];
            if !rest.is_empty() {
                settings.insert("root".into(), rest.trim_start_matches("//").into());
            }
            return Ok(StorageSpec {
                kind: scheme.into(),
                settings,
            });
        }
        Err(invalid(format!(
            "storage URI '{uri}' is not one of fs:PATH, memory:, s3://BUCKET[/ROOT]?..."
        )))
    }
}

/// How storage operations are retried and timed out.
#[derive(Debug, Clone, Copy)]
pub struct StoragePolicy {
    /// Maximum attempts per operation, including the first.
    pub attempts: usize,
    /// Timeout of one operation.
    pub timeout: Duration,
}

impl Default for StoragePolicy {
    fn default() -> Self {
        StoragePolicy {
            attempts: 5,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Opens the storage named by `spec` with retries, timeouts and logging layered on.
pub fn open_storage(
    plugins: &PluginSet,
    spec: &StorageSpec,
    policy: StoragePolicy,
) -> Result<Storage> {
    let backend = plugins.backend(&spec.kind)?;
    let storage = build_storage(backend.as_ref(), &spec.settings)?;
    Ok(with_policy(&storage, policy))
}

/// The same storage (the same objects, even for `memory`) with retries, timeouts and
/// logging layered on as `policy` says.
pub fn with_policy(storage: &Storage, policy: StoragePolicy) -> Storage {
    let mut storage = storage.clone();
    storage.operator = storage
        .operator
        .layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(policy.timeout)
                .with_io_timeout(policy.timeout),
        )
        .layer(
            opendal::layers::RetryLayer::new()
                .with_max_times(policy.attempts.saturating_sub(1))
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        )
        .layer(opendal::layers::LoggingLayer::new(QuietFailures));
    storage
}

/// Logs storage operations at debug level, failures included. Every failure reaches the
/// caller, which reports it with what it was doing (a command's error, a server's log line);
/// opendal's default logger would print it once more, at error level, before that.
#[derive(Debug, Clone, Copy)]
struct QuietFailures;

impl opendal::layers::LoggingInterceptor for QuietFailures {
    fn log(
        &self,
        info: &opendal::raw::ServiceInfo,
        operation: opendal::raw::Operation,
        context: &[(&str, &str)],
        message: &str,
        err: Option<&opendal::Error>,
    ) {
        let target = format!("{}:{}", info.scheme(), info.name());
        match err {
            Some(err) => tracing::debug!("{target} {operation} {message}: {err} {context:?}"),
            None => tracing::trace!("{target} {operation} {message} {context:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_uris() {
        let s = StorageSpec::parse_uri("fs:/srv/images").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.settings["root"].as_str()),
            ("fs", "/srv/images")
        );
        assert_eq!(StorageSpec::parse_uri("memory:").unwrap().kind, "memory");
        let s = StorageSpec::parse_uri(
            "s3://bucket/some/root?endpoint=http://127.0.0.1:9000&region=eu&force_path_style=true",
        )
        .unwrap();
        assert_eq!(s.kind, "s3");
        assert_eq!(s.settings["bucket"], "bucket");
        assert_eq!(s.settings["root"], "some/root");
        assert_eq!(s.settings["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(s.settings["force_path_style"], "true");
        assert!(StorageSpec::parse_uri("fs:").is_err());
        assert!(StorageSpec::parse_uri("s3://").is_err());
        assert!(StorageSpec::parse_uri("nonsense").is_err());
    }
}
