//! Fetching one chunk, checked against the manifest before anyone writes it, with retries.

use crate::{Error, Result};
use aero_chunked::source::{retry_policy, Source};
use aero_chunked::store::ExpectedChunk;
use backon::BackoffBuilder;

/// Fetches chunk `index` (`len` bytes, `sha256` when the manifest lists it) from `source`.
/// Bytes of the wrong size or digest are fetched again with backoff, `attempts` times in all;
/// the source retries its own transport failures. The error names the chunk, its location and
/// what was wrong.
pub(crate) async fn fetch_chunk(
    source: &Source,
    name: &str,
    index: u64,
    len: u64,
    sha256: Option<String>,
    attempts: usize,
) -> Result<Vec<u8>> {
    let fail = |problem: String| Error::Chunk {
        index,
        location: source.location(name),
        problem,
    };
    let mut delays = retry_policy(attempts).build();
    let mut tries = 0;
    loop {
        tries += 1;
        let bytes = match source.get(name, len).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(fail("not found".into())),
            Err(e) => return Err(fail(error_chain(&e))),
        };
        let digest = sha256.clone();
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let checked = ExpectedChunk {
                len,
                sha256: digest.as_deref(),
            }
            .check(&bytes);
            (bytes, checked)
        })
        .await
        .map_err(|e| fail(format!("checking thread failed: {e}")))?;
        match checked {
            Ok(()) => return Ok(bytes),
            Err(mismatch) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(fail(format!("{mismatch} (after {tries} attempts)"))),
            },
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
