//! Response bodies with an exact length (so HTTP/1.1 uses `Content-Length` framing) that read
//! their bytes from storage piece by piece and hold a concurrency permit until done.

use super::metrics::Metrics;
use aero_chunked::read::{read_piece, Piece};
use aero_plugin_api::backend::Storage;
use axum::body::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::OwnedSemaphorePermit;

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
    /// A body that first sends `ready`, then reads `rest` from `storage`.
    pub fn new<I: Iterator<Item = Piece> + Send + 'static>(
        storage: Arc<Storage>,
        ready: VecDeque<Bytes>,
        rest: I,
        total: u64,
        permit: Option<OwnedSemaphorePermit>,
        accounting: Option<Accounting>,
    ) -> Self {
        let rest = Some(
            futures::stream::iter(rest)
                .then(move |p| {
                    let storage = Arc::clone(&storage);
                    async move { read_piece(&storage, &p).await }
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
