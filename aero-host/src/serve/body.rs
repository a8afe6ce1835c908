//! Response bodies with an exact length (so HTTP/1.1 uses `Content-Length` framing) that read
//! their bytes from storage piece by piece and hold a concurrency permit until done.

use super::images::Source;
use super::metrics::Metrics;
use aero_plugin_api::backend::opendal::Operator;
use axum::body::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::OwnedSemaphorePermit;

/// Largest single storage read.
pub const PIECE: u64 = 4 * 1024 * 1024;

/// The pieces that make up bytes `pos..end` of an image: one raw object, or the chunks of a
/// published image, at most [`PIECE`] bytes each.
pub struct Plan {
    source: Source,
    pos: u64,
    end: u64,
    tag: Arc<str>,
}

impl Plan {
    /// Bytes `start..end` of `source`, whose content is identified by `tag` (its validators).
    pub fn new(source: Source, start: u64, end: u64, tag: Arc<str>) -> Self {
        Plan {
            source,
            pos: start,
            end,
            tag,
        }
    }
}

impl Iterator for Plan {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.pos >= self.end {
            return None;
        }
        let piece = match &self.source {
            Source::Raw(key) => Piece {
                key: key.clone(),
                start: self.pos,
                end: self.end.min(self.pos + PIECE),
                tag: Arc::clone(&self.tag),
            },
            Source::Chunked(m) => {
                let size = m.manifest.chunk_size;
                let index = self.pos / size;
                let base = index * size;
                let chunk_end = base + m.manifest.chunk_len(index);
                let end = self.end.min(chunk_end).min(self.pos + PIECE);
                Piece {
                    key: m.chunk_key(index),
                    start: self.pos - base,
                    end: end - base,
                    tag: Arc::clone(&self.tag),
                }
            }
        };
        self.pos += piece.end - piece.start;
        Some(piece)
    }
}

/// A byte range of one object.
#[derive(Debug, Clone)]
pub struct Piece {
    /// Object key.
    pub key: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Identifies the object's content (its validators), for caching.
    pub tag: Arc<str>,
}

/// Reads one piece, failing when the object is shorter than expected.
pub async fn read_piece(op: &Operator, p: &Piece) -> std::io::Result<VecDeque<Bytes>> {
    let buf = op
        .read_with(&p.key)
        .range(p.start..p.end)
        .await
        .map_err(std::io::Error::other)?;
    if buf.len() as u64 != p.end - p.start {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "{} is shorter than expected ({} of {} bytes at {})",
                p.key,
                buf.len(),
                p.end - p.start,
                p.start
            ),
        ));
    }
    Ok(Iterator::collect(buf))
}

/// Where served bytes are counted.
pub struct Accounting {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The image id label.
    pub image_id: String,
}

/// A body of exactly `remaining` bytes.
pub struct SizedBody {
    ready: VecDeque<Bytes>,
    rest: Option<BoxStream<'static, std::io::Result<VecDeque<Bytes>>>>,
    remaining: u64,
    sent: u64,
    _permit: Option<OwnedSemaphorePermit>,
    accounting: Option<Accounting>,
}

impl SizedBody {
    /// A body that first sends `ready`, then reads `rest` from `op`.
    pub fn new<I: Iterator<Item = Piece> + Send + 'static>(
        op: Operator,
        ready: VecDeque<Bytes>,
        rest: I,
        total: u64,
        permit: Option<OwnedSemaphorePermit>,
        accounting: Option<Accounting>,
    ) -> Self {
        let rest = Some(
            futures::stream::iter(rest)
                .then(move |p| {
                    let op = op.clone();
                    async move { read_piece(&op, &p).await }
                })
                .boxed(),
        );
        SizedBody {
            ready,
            rest,
            remaining: total,
            sent: 0,
            _permit: permit,
            accounting,
        }
    }
}

impl Drop for SizedBody {
    fn drop(&mut self) {
        if let Some(a) = &self.accounting {
            a.metrics.bytes_served(&a.image_id, self.sent);
        }
    }
}

impl http_body::Body for SizedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                if b.is_empty() {
                    continue;
                }
                let n = (b.len() as u64).min(self.remaining);
                self.remaining -= n;
                self.sent += n;
                return Poll::Ready(Some(Ok(Frame::data(b.slice(..n as usize)))));
            }
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            let Some(rest) = self.rest.as_mut() else {
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "storage returned fewer bytes than announced",
                ))));
            };
            match rest.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bufs))) => self.ready = bufs,
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("response body aborted: {e}");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => self.rest = None,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
