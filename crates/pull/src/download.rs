//! One plain file over HTTP (a catalog's disk file or archive), checked against its sha256.
//!
//! The bytes go to a download file chosen by the caller; after an interruption the next
//! download of the same URL to the same file resumes with a `Range` request (the bytes kept
//! are hashed again first). A server that answers the range with `200` starts it over. A file
//! whose digest is wrong is removed.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What [`download`] fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Downloaded {
    /// Bytes fetched by this call.
    pub bytes_downloaded: u64,
    /// Bytes an interrupted earlier call had kept.
    pub bytes_resumed: u64,
}

/// Downloads `url` into `dest` (resuming what an interrupted call left there) and checks the
/// whole file against `sha256`.
pub async fn download(url: &str, dest: &Path, sha256: &str) -> Result<Downloaded> {
    let get = |problem: String| Error::Invalid(format!("GET {url}: {problem}"));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| get(e.to_string()))?;
    let (mut hasher, kept) = hash_kept(dest).await?;
    let mut request = client.get(url);
    if kept > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={kept}-"));
    }
    let mut response = request.send().await.map_err(|e| get(e.to_string()))?;
    let status = response.status();
    let resumed = kept > 0
        && status == reqwest::StatusCode::PARTIAL_CONTENT
        && response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {kept}-")));
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && kept > 0 {
        // The kept bytes are the whole file, or more than it: the digest decides below.
        drop(response);
        return finish(
            hasher,
            dest,
            sha256,
            url,
            Downloaded {
                bytes_resumed: kept,
                ..Downloaded::default()
            },
        );
    }
    if !status.is_success() {
        return Err(get(format!("HTTP {status}")));
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(dest)
        .await
        .map_err(|e| Error::io(format!("opening {}", dest.display()), e))?;
    let mut done = Downloaded::default();
    if resumed {
        done.bytes_resumed = kept;
    } else {
        hasher = Sha256::new();
    }
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
    let kept_message = |e: String, done: &Downloaded| {
        get(format!(
            "{e} ({} bytes kept in {}: the next pull resumes)",
            done.bytes_resumed + done.bytes_downloaded,
            dest.display()
        ))
    };
    loop {
        let piece = match response.chunk().await {
            Ok(Some(piece)) => piece,
            Ok(None) => break,
            Err(e) => {
                let _ = writer.flush().await;
                return Err(kept_message(e.to_string(), &done));
            }
        };
        hasher.update(&piece);
        writer
            .write_all(&piece)
            .await
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        done.bytes_downloaded += piece.len() as u64;
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    finish(hasher, dest, sha256, url, done)
}

/// Checks the digest; a wrong file is removed.
fn finish(
    hasher: Sha256,
    dest: &Path,
    sha256: &str,
    url: &str,
    done: Downloaded,
) -> Result<Downloaded> {
    let actual = hex::encode(hasher.finalize());
    if actual != sha256.to_ascii_lowercase() {
        let _ = std::fs::remove_file(dest);
        return Err(Error::Invalid(format!(
            "{url}: sha256 is {actual}, the catalog says {sha256}"
        )));
    }
    Ok(done)
}

/// The hasher over the bytes `dest` already holds, and their count.
async fn hash_kept(dest: &Path) -> Result<(Sha256, u64)> {
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let kept = match std::fs::File::open(&dest) {
            Ok(mut file) => std::io::copy(&mut file, &mut hasher)
                .map_err(|e| Error::io(format!("reading {}", dest.display()), e))?,
            Err(_) => 0,
        };
        Ok((hasher, kept))
    })
    .await
    .map_err(|e| Error::Invalid(format!("a reading thread failed: {e}")))?
}
