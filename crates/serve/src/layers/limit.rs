//! The concurrency cap (SPEC 3.9): one per-process semaphore shared by the bytes and chunked
//! routes and their preflights. Acquisition never waits: without a free permit the request
//! gets 429 at once. The permit is held by the response body ([`Held`]) until the body is
//! fully sent or dropped.

use super::errors::ApiError;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A held permit of the cap.
pub type Permit = OwnedSemaphorePermit;

/// The cap; `None` inside when unlimited.
pub struct Limit(Option<Arc<Semaphore>>);

impl Limit {
    /// A cap of `max` requests at once; 0 = unlimited.
    pub fn new(max: usize) -> Self {
        Limit((max > 0).then(|| Arc::new(Semaphore::new(max))))
    }

    /// A permit (`None` when unlimited), or the 429 error.
    pub fn acquire(&self) -> Result<Option<Permit>, ApiError> {
        match &self.0 {
            None => Ok(None),
            Some(s) => Arc::clone(s).try_acquire_owned().map(Some).map_err(|_| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many concurrent requests",
                )
            }),
        }
    }
}

/// A response body that holds a guard (a [`Permit`], a connection's in-flight count) while it
/// is alive.
pub struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G> Held<G> {
    /// `body`, holding `guard`.
    pub fn new(body: Body, guard: G) -> Self {
        Held {
            body,
            _guard: guard,
        }
    }
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
