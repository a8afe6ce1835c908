//! `aero-host verify`: re-read a published image and check its manifest, meta, pointer and
//! chunks, reporting every bad chunk.

use crate::chunked::{
    resolve_destination, sha256_hex, DestinationRequest, Latest, Manifest, ManifestLimits, Meta,
    MAX_LATEST_BYTES, MAX_MANIFEST_BYTES,
};
use crate::objects::read_limited;
use aero_plugin_api::backend::Storage;
use anyhow::{anyhow, bail, Context, Result};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the manifest comes from.
pub enum VerifySource {
    /// A storage backend: by prefix (with the `latest.json` fallback) or an explicit key.
    Storage {
        /// The storage.
        storage: Arc<Storage>,
        /// `--prefix`.
        prefix: Option<String>,
        /// `--manifest-key`.
        manifest_key: Option<String>,
    },
    /// A manifest URL; chunks resolve relative to it, with its query string.
    Http {
        /// `--manifest-url`.
        url: url::Url,
        /// `--header` pairs.
        headers: Vec<(String, String)>,
    },
    /// A local manifest file; chunks under `<dir>/chunks/`.
    File(PathBuf),
}

/// Options of a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Expected image id.
    pub image_id: Option<String>,
    /// Expected version (and, with a prefix, which version to verify).
    pub image_version: Option<String>,
    /// Chunks checked at once.
    pub concurrency: usize,
    /// Attempts per HTTP download.
    pub retries: usize,
    /// Largest accepted chunk count.
    pub max_chunks: u64,
    /// Verify only this many random chunks plus the last one.
    pub chunk_sample: Option<u64>,
    /// Seed of the sample.
    pub chunk_sample_seed: Option<u64>,
}

/// One bad chunk.
#[derive(Debug, Clone, Serialize)]
pub struct BadChunk {
    /// Chunk index.
    pub index: u64,
    /// Object key or URL.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Image id from the manifest.
    pub image_id: String,
    /// Version from the manifest.
    pub version: String,
    /// Where the manifest was.
    pub manifest: String,
    /// Chunks checked.
    pub checked_chunks: u64,
    /// Chunks in the manifest.
    pub total_chunks: u64,
    /// Bytes checked.
    pub checked_bytes: u64,
    /// Notes (missing meta.json, the pointer checked, ...).
    pub notes: Vec<String>,
    /// Every bad chunk found.
    pub bad_chunks: Vec<BadChunk>,
    /// Seconds taken.
    pub seconds: f64,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.bad_chunks.is_empty()
    }
}

impl VerifyOptions {
    fn validate(&self) -> Result<()> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.retries == 0 {
            bail!("--retries must be at least 1");
        }
        if self.max_chunks == 0 || self.max_chunks > 100_000_000 {
            bail!("--max-chunks must be between 1 and 100000000");
        }
        if self.chunk_sample_seed.is_some() && self.chunk_sample.is_none() {
            bail!("--chunk-sample-seed needs --chunk-sample");
        }
        Ok(())
    }
}

/// Fetches objects relative to the manifest.
enum Fetcher {
    Storage {
        storage: Arc<Storage>,
        dir: String,
    },
    Http {
        client: reqwest::Client,
        base: url::Url,
        headers: Vec<(String, String)>,
        retries: usize,
    },
    File {
        dir: PathBuf,
    },
}

impl Fetcher {
    fn location(&self, name: &str) -> String {
        match self {
            Fetcher::Storage { dir, .. } => format!("{dir}{name}"),
            Fetcher::Http { base, .. } => http_join(base, name)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| name.to_string()),
            Fetcher::File { dir } => dir.join(name).display().to_string(),
        }
    }

    /// The object's bytes, `None` if it does not exist, an error if larger than `limit`.
    async fn get(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self {
            Fetcher::Storage { storage, dir } => {
                read_limited(storage, &format!("{dir}{name}"), limit).await
            }
            Fetcher::File { dir } => {
                let path = dir.join(name);
                let meta = match tokio::fs::metadata(&path).await {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                if meta.len() > limit {
                    bail!(
                        "{} is {} bytes, more than the {limit} expected",
                        path.display(),
                        meta.len()
                    );
                }
                Ok(Some(
                    tokio::fs::read(&path)
                        .await
                        .with_context(|| format!("reading {}", path.display()))?,
                ))
            }
            Fetcher::Http {
                client,
                base,
                headers,
                retries,
            } => {
                let url = http_join(base, name)?;
                http_get(client, &url, headers, *retries, limit).await
            }
        }
    }
}

/// Joins `name` to the manifest URL, keeping the manifest's query and dropping fragments.
fn http_join(base: &url::Url, name: &str) -> Result<url::Url> {
    let mut url = base
        .join(name)
        .with_context(|| format!("resolving {name} against {base}"))?;
    url.set_query(base.query());
    url.set_fragment(None);
    Ok(url)
}

async fn http_get(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(String, String)],
    retries: usize,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let mut attempt = 1;
    loop {
        let result = http_get_once(client, url, headers, limit).await;
        match result {
            Err(HttpError::Retryable(msg)) if attempt < retries => {
                let delay = 200u64 * (1 << (attempt - 1).min(10));
                tokio::time::sleep(Duration::from_millis(
                    delay.min(10_000) + fastrand::u64(0..200),
                ))
                .await;
                tracing::warn!("GET {url}: {msg}; retrying (attempt {attempt} of {retries})");
                attempt += 1;
            }
            Err(HttpError::Retryable(msg)) => bail!("GET {url}: {msg} (after {attempt} attempts)"),
            Err(HttpError::Fatal(msg)) => bail!("GET {url}: {msg}"),
            Ok(body) => return Ok(body),
        }
    }
}

enum HttpError {
    Retryable(String),
    Fatal(String),
}

async fn http_get_once(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(String, String)],
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, HttpError> {
    let mut request = client.get(url.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request = request.header("accept-encoding", "gzip, deflate, br, zstd");
    let mut response = request
        .send()
        .await
        .map_err(|e| HttpError::Retryable(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        return Err(HttpError::Retryable(format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(HttpError::Fatal(format!("HTTP {status}")));
    }
    if let Some(encoding) = response.headers().get("content-encoding") {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(HttpError::Fatal(format!(
                "unexpected Content-Encoding '{encoding}'"
            )));
        }
    }
    if let Some(len) = response.content_length() {
        if len > limit {
            return Err(HttpError::Fatal(format!(
                "response of {len} bytes is larger than the {limit} expected"
            )));
        }
    }
    let mut body = Vec::new();
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|e| HttpError::Retryable(e.to_string()))?
    {
        if (body.len() + piece.len()) as u64 > limit {
            return Err(HttpError::Fatal(format!(
                "response is larger than the {limit} bytes expected"
            )));
        }
        body.extend_from_slice(&piece);
    }
    Ok(Some(body))
}

/// Picks `n` random chunk indices below `count - 1` (Floyd's algorithm) plus the last one,
/// ascending; all chunks when `n + 1 >= count`.
pub fn sample_indices(count: u64, n: Option<u64>, seed: Option<u64>) -> Vec<u64> {
    let Some(n) = n.filter(|n| n.saturating_add(1) < count) else {
        return (0..count).collect();
    };
    let mut rng = seed.map(fastrand::Rng::with_seed).unwrap_or_default();
    let range = count - 1;
    let mut chosen = std::collections::BTreeSet::new();
    for j in (range - n)..range {
        let t = rng.u64(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.insert(count - 1);
    chosen.into_iter().collect()
}

/// Verifies a published image.
pub async fn verify(source: VerifySource, options: &VerifyOptions) -> Result<VerifyReport> {
    options.validate()?;
    let started = Instant::now();
    let limits = ManifestLimits {
        max_chunks: options.max_chunks,
    };
    let mut notes = Vec::new();
    let (fetcher, manifest_location, manifest, latest_check) = match source {
        VerifySource::Storage {
            storage,
            prefix,
            manifest_key,
        } => {
            let (key, pointer) = storage_manifest_key(
                &storage,
                prefix.as_deref(),
                manifest_key.as_deref(),
                options,
            )
            .await?;
            let Some(dir) = key.strip_suffix("manifest.json") else {
                bail!("manifest key '{key}' must end with manifest.json");
            };
            let bytes = read_limited(&storage, &key, MAX_MANIFEST_BYTES)
                .await?
                .ok_or_else(|| anyhow!("manifest {key} not found in {}", storage.description))?;
            let manifest =
                Manifest::parse(&bytes, limits).with_context(|| format!("checking {key}"))?;
            if prefix.is_some() {
                let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                if segments.len() >= 2
                    && (segments[segments.len() - 2] != manifest.image_id
                        || segments[segments.len() - 1] != manifest.version)
                {
                    bail!(
                        "{key} names image '{}' version '{}', which does not match its location",
                        manifest.image_id,
                        manifest.version
                    );
                }
            }
            let fetcher = Fetcher::Storage {
                storage: Arc::clone(&storage),
                dir: dir.to_string(),
            };
            let location = format!("{}/{key}", storage.description);
            (
                fetcher,
                location,
                manifest,
                Some((storage, key.clone(), pointer)),
            )
        }
        VerifySource::Http { url, headers } => {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?;
            let bytes = http_get(&client, &url, &headers, options.retries, MAX_MANIFEST_BYTES)
                .await?
                .ok_or_else(|| anyhow!("manifest {url} not found (404)"))?;
            let manifest =
                Manifest::parse(&bytes, limits).with_context(|| format!("checking {url}"))?;
            let fetcher = Fetcher::Http {
                client,
                base: url.clone(),
                headers,
                retries: options.retries,
            };
            (fetcher, url.to_string(), manifest, None)
        }
        VerifySource::File(path) => {
            let len = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            if len > MAX_MANIFEST_BYTES {
                bail!(
                    "{} is {len} bytes, more than the {MAX_MANIFEST_BYTES} allowed for a manifest",
                    path.display()
                );
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let manifest = Manifest::parse(&bytes, limits)
                .with_context(|| format!("checking {}", path.display()))?;
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            (
                Fetcher::File { dir },
                path.display().to_string(),
                manifest,
                None,
            )
        }
    };
    if let Some(id) = &options.image_id {
        if &manifest.image_id != id {
            bail!(
                "manifest imageId is '{}', expected '{id}'",
                manifest.image_id
            );
        }
    }
    if let Some(version) = &options.image_version {
        if &manifest.version != version {
            bail!(
                "manifest version is '{}', expected '{version}'",
                manifest.version
            );
        }
    }
    match fetcher.get("meta.json", MAX_LATEST_BYTES).await? {
        Some(bytes) => {
            Meta::parse(&bytes)?.check_against(&manifest)?;
            notes.push("meta.json agrees with the manifest".to_string());
        }
        None => notes.push("meta.json not found; skipped".to_string()),
    }
    if let Some((storage, key, pointer)) = latest_check {
        check_latest(&storage, &key, &manifest, pointer, &mut notes).await?;
    }

    let indices = sample_indices(
        manifest.chunk_count,
        options.chunk_sample,
        options.chunk_sample_seed,
    );
    let manifest = Arc::new(manifest);
    let fetcher = Arc::new(fetcher);
    let results: Vec<(u64, Result<u64, BadChunk>)> = stream::iter(indices)
        .map(|index| {
            let manifest = Arc::clone(&manifest);
            let fetcher = Arc::clone(&fetcher);
            async move { (index, check_chunk(&fetcher, &manifest, index).await) }
        })
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let mut report = VerifyReport {
        image_id: manifest.image_id.clone(),
        version: manifest.version.clone(),
        manifest: manifest_location,
        checked_chunks: 0,
        total_chunks: manifest.chunk_count,
        checked_bytes: 0,
        notes,
        bad_chunks: Vec::new(),
        seconds: 0.0,
    };
    for (_, result) in results {
        match result {
            Ok(bytes) => {
                report.checked_chunks += 1;
                report.checked_bytes += bytes;
            }
            Err(bad) => report.bad_chunks.push(bad),
        }
    }
    report.bad_chunks.sort_by_key(|b| b.index);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn check_chunk(fetcher: &Fetcher, manifest: &Manifest, index: u64) -> Result<u64, BadChunk> {
    let name = manifest.chunk_name(index);
    let bad = |problem: String| BadChunk {
        index,
        key: fetcher.location(&name),
        problem,
    };
    let expected = manifest.chunk_len(index);
    let bytes = match fetcher.get(&name, expected).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(bad("missing (not found)".to_string())),
        Err(e) => return Err(bad(format!("{e:#}"))),
    };
    if bytes.len() as u64 != expected {
        return Err(bad(format!(
            "size is {} bytes, expected {expected}",
            bytes.len()
        )));
    }
    if let Some(want) = manifest.chunk_sha256(index) {
        let got = sha256_hex(&bytes);
        if got != want {
            return Err(bad(format!("sha256 is {got}, expected {want}")));
        }
    }
    Ok(expected)
}

/// The `latest.json` that led to the manifest, when it was found through the pointer.
struct Pointer {
    root: String,
    latest: Latest,
}

/// Picks the manifest key: explicit, by version, at the prefix, or through `latest.json`.
async fn storage_manifest_key(
    storage: &Storage,
    prefix: Option<&str>,
    manifest_key: Option<&str>,
    options: &VerifyOptions,
) -> Result<(String, Option<Pointer>)> {
    match (prefix, manifest_key) {
        (Some(_), Some(_)) => bail!("--prefix and --manifest-key are mutually exclusive"),
        (None, None) => bail!("verifying from storage needs --prefix or --manifest-key"),
        (None, Some(key)) => Ok((key.trim_start_matches('/').to_string(), None)),
        (Some(prefix), None) => {
            let prefix = crate::chunked::normalize_prefix(prefix);
            if let Some(version) = &options.image_version {
                let destination = resolve_destination(&DestinationRequest {
                    prefix: &prefix,
                    image_id: options.image_id.as_deref(),
                    image_version: Some(version),
                    computed_version: None,
                })?;
                return Ok((destination.manifest_key(), None));
            }
            let key = format!("{prefix}manifest.json");
            if crate::objects::stat(storage, &key).await?.is_some() {
                return Ok((key, None));
            }
            let latest_key = format!("{prefix}latest.json");
            let Some(bytes) = read_limited(storage, &latest_key, MAX_LATEST_BYTES).await? else {
                bail!(
                    "neither {key} nor {latest_key} exists in {}: give the version's prefix, --image-version, or --manifest-key",
                    storage.description
                );
            };
            let latest = Latest::parse(&bytes).with_context(|| format!("checking {latest_key}"))?;
            Ok((
                latest.manifest_key.clone(),
                Some(Pointer {
                    root: prefix,
                    latest,
                }),
            ))
        }
    }
}

/// Checks the pointer that led here, or else a `latest.json` beside the version directory.
async fn check_latest(
    storage: &Storage,
    manifest_key: &str,
    manifest: &Manifest,
    pointer: Option<Pointer>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let (root, latest) = match pointer {
        Some(p) => (p.root, p.latest),
        None => {
            let dir = manifest_key
                .trim_end_matches("manifest.json")
                .trim_end_matches('/');
            let root = match dir.rfind('/') {
                Some(i) => dir[..=i].to_string(),
                None => String::new(),
            };
            let key = format!("{root}latest.json");
            let Some(bytes) = read_limited(storage, &key, MAX_LATEST_BYTES).await? else {
                return Ok(());
            };
            let latest = Latest::parse(&bytes).with_context(|| format!("checking {key}"))?;
            if latest.manifest_key != manifest_key {
                latest
                    .check_against(&root, manifest_key, manifest)
                    .with_context(|| format!("checking {key}"))?;
                if crate::objects::stat(storage, &latest.manifest_key)
                    .await?
                    .is_none()
                {
                    bail!(
                        "{key} points at {}, which does not exist",
                        latest.manifest_key
                    );
                }
                notes.push(format!(
                    "{key} points at another version, {}",
                    latest.version
                ));
                return Ok(());
            }
            (root, latest)
        }
    };
    latest
        .check_against(&root, manifest_key, manifest)
        .with_context(|| format!("checking {root}latest.json"))?;
    notes.push(format!("{root}latest.json points at this version"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_seeded_distinct_and_include_the_last_chunk() {
        let a = sample_indices(100, Some(10), Some(7));
        assert_eq!(a, sample_indices(100, Some(10), Some(7)));
        assert_eq!(a.len(), 11);
        assert_eq!(*a.last().unwrap(), 99);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(5, Some(4), None), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_indices(5, Some(0), None), vec![4]);
        assert_eq!(sample_indices(3, None, None), vec![0, 1, 2]);
    }
}
