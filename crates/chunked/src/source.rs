//! Where a published image's objects are read from: a storage, an HTTP base URL or a local
//! directory, with names relative to the manifest (`meta.json`, `chunks/00000042.bin`).

use crate::error::invalid;
use crate::store::read_limited;
use crate::{Error, Result};
use aero_plugin_api::backend::Storage;
use backon::{ExponentialBuilder, Retryable};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shortest wait before a retry (the storage retry layer waits the same).
pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest wait before a retry (the storage retry layer waits the same).
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// The retry policy of HTTP requests, the one opendal's `RetryLayer` applies to storage:
/// exponential from [`RETRY_MIN_DELAY`] to [`RETRY_MAX_DELAY`] with jitter, `attempts` tries
/// in all (the first included).
pub fn retry_policy(attempts: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN_DELAY)
        .with_max_delay(RETRY_MAX_DELAY)
        .with_max_times(attempts.saturating_sub(1))
        .with_jitter()
}

/// Objects relative to a manifest.
pub enum Source {
    /// A directory (`…/<version>/`) in a storage.
    Storage {
        /// The storage.
        storage: Arc<Storage>,
        /// The key prefix of the manifest's directory.
        dir: String,
    },
    /// URLs relative to a manifest URL.
    Http(HttpSource),
    /// A local directory.
    File {
        /// The manifest's directory.
        dir: PathBuf,
    },
}

impl Source {
    /// Where the object `name` is, for messages: a key, a URL or a path.
    pub fn location(&self, name: &str) -> String {
        match self {
            Source::Storage { dir, .. } => format!("{dir}{name}"),
            Source::Http(http) => http
                .url_of(name)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| name.to_string()),
            Source::File { dir } => dir.join(name).display().to_string(),
        }
    }

    /// The object's bytes, `None` if it does not exist, an error if larger than `limit`.
    pub async fn get(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Storage { storage, dir } => {
                Ok(read_limited(storage, &format!("{dir}{name}"), limit)
                    .await?
                    .map(|b| b.to_vec()))
            }
            Source::File { dir } => read_file_limited(&dir.join(name), limit, "expected").await,
            Source::Http(http) => http.get(&http.url_of(name)?, limit).await,
        }
    }
}

/// Reads a local file, `None` when it does not exist, an error when larger than `limit`
/// (`what` finishes the message: "… more than the LIMIT `what`").
pub(crate) async fn read_file_limited(
    path: &std::path::Path,
    limit: u64,
    what: &str,
) -> Result<Option<Vec<u8>>> {
    match read_file(path, limit, what).await {
        Err(e) if e.is_not_found() => Ok(None),
        result => result.map(Some),
    }
}

/// Reads a local file; larger than `limit` is an error.
pub(crate) async fn read_file(path: &std::path::Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.len() > limit {
        invalid!(
            "{} is {} bytes, more than the {limit} {what}",
            path.display(),
            meta.len()
        );
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// Objects relative to a manifest URL, fetched with extra headers and retries.
pub struct HttpSource {
    client: reqwest::Client,
    base: url::Url,
    headers: Vec<(String, String)>,
    attempts: usize,
}

/// Why one HTTP attempt failed.
#[derive(Debug)]
enum Attempt {
    /// Worth retrying (connection trouble, 5xx, 408, 429).
    Retryable(String),
    /// Not worth retrying.
    Fatal(String),
}

impl HttpSource {
    /// Objects relative to `base` (the manifest URL), sending `headers`, trying each request
    /// `attempts` times at most.
    pub fn new(base: url::Url, headers: Vec<(String, String)>, attempts: usize) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Http(format!("building the HTTP client: {e}")))?;
        Ok(HttpSource {
            client,
            base,
            headers,
            attempts,
        })
    }

    /// The manifest URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// `name` joined to the manifest URL, keeping the manifest's query and dropping fragments.
    pub fn url_of(&self, name: &str) -> Result<url::Url> {
        let mut url = self
            .base
            .join(name)
            .map_err(|e| Error::Http(format!("resolving {name} against {}: {e}", self.base)))?;
        url.set_query(self.base.query());
        url.set_fragment(None);
        Ok(url)
    }

    /// GETs `url`: `None` on 404, an error when the body is larger than `limit`; connection
    /// failures, 5xx, 408 and 429 are retried as [`retry_policy`] says.
    pub async fn get(&self, url: &url::Url, limit: u64) -> Result<Option<Vec<u8>>> {
        let tries = AtomicUsize::new(0);
        let result = (|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            self.get_once(url, limit).await
        })
        .retry(retry_policy(self.attempts))
        .when(|e| matches!(e, Attempt::Retryable(_)))
        .notify(|e, _| {
            if let Attempt::Retryable(msg) = e {
                let attempt = tries.load(Ordering::Relaxed);
                tracing::warn!(
                    "GET {url}: {msg}; retrying (attempt {attempt} of {})",
                    self.attempts
                );
            }
        })
        .await;
        match result {
            Ok(body) => Ok(body),
            Err(Attempt::Retryable(msg)) => Err(Error::Http(format!(
                "GET {url}: {msg} (after {} attempts)",
                tries.load(Ordering::Relaxed)
            ))),
            Err(Attempt::Fatal(msg)) => Err(Error::Http(format!("GET {url}: {msg}"))),
        }
    }

    async fn get_once(&self, url: &url::Url, limit: u64) -> Result<Option<Vec<u8>>, Attempt> {
        let mut request = self.client.get(url.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request = request.header("accept-encoding", "gzip, deflate, br, zstd");
        let mut response = request
            .send()
            .await
            .map_err(|e| Attempt::Retryable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            return Err(Attempt::Retryable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(format!("HTTP {status}")));
        }
        // The request asks for the whole object: a part of it is a broken cache or proxy.
        if status == reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(Attempt::Retryable(format!(
                "HTTP {status} to a request for the whole object"
            )));
        }
        if let Some(encoding) = response.headers().get("content-encoding") {
            let encoding = encoding.to_str().unwrap_or("?").trim();
            if !encoding.eq_ignore_ascii_case("identity") {
                return Err(Attempt::Fatal(format!(
                    "unexpected Content-Encoding '{encoding}'"
                )));
            }
        }
        if let Some(len) = response.content_length() {
            if len > limit {
                return Err(Attempt::Fatal(format!(
                    "response of {len} bytes is larger than the {limit} expected"
                )));
            }
        }
        // One allocation for the announced length (never more than the limit).
        let announced = response.content_length().unwrap_or(0).min(limit);
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(piece) = response
            .chunk()
            .await
            .map_err(|e| Attempt::Retryable(e.to_string()))?
        {
            if (body.len() + piece.len()) as u64 > limit {
                return Err(Attempt::Fatal(format!(
                    "response is larger than the {limit} bytes expected"
                )));
            }
            body.extend_from_slice(&piece);
        }
        Ok(Some(body))
    }
}
