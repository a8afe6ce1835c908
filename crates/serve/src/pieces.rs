//! Reading the bytes of responses as pieces (see `aero_chunked::read`), through one bounded
//! in-memory piece cache, into response bodies of an exact length. Objects that are local files
//! are read with positional reads on files kept open ([`crate::files`]); others through the
//! storage's operator.
//!
//! # Streaming
//! A range reads its first [`FIRST_RANGE_PIECE`] (1 MiB) in one piece, the rest in pieces of at
//! most [`STREAM_PIECE`] (256 KiB); a full body (a chunk, a whole image) reads its first piece
//! whole (one chunk, or the first 4 MiB of an image, in one read, so a cached chunk is sent from
//! the cache in one piece), the rest in pieces of [`STREAM_PIECE`]. The first piece is read
//! before the response starts (so a missing object is still a 404), the rest while it is sent,
//! at most [`READ_AHEAD`] pieces ahead of the client. A body therefore holds the piece it is
//! sending (its first piece at most) plus about 0.5 MiB, whatever its length, and a client that
//! stops reading stops the reads.
//!
//! # The piece cache
//! - **What is cached:** every piece of a 206 range (at most `max_range_bytes`), and the first
//!   piece (whole, up to 4 MiB) of a full-image 200 or of a chunk.
//! - **Keyed by:** object key, byte range within the object, and the content tag of what is
//!   served (its ETag and Last-Modified), so a changed object is never answered from old
//!   entries once its stat (at most `cache_ttl` old) shows the change.
//! - **Bypassed:** when `cache_bytes` is 0 (no cache at all), and for the pieces after the
//!   first of a full image or a chunk.
//! - **How big:** at most `cache_bytes` (default 256 MiB), each entry weighing its length plus
//!   its key; when full, quick_cache evicts the least valuable (cold) entries first. Entries
//!   are exact copies, so the weight is the memory they hold.
//!
//! Metrics: `aero_storage_piece_cache_hits_total`, `aero_storage_piece_cache_misses_total`,
//! `aero_storage_piece_cache_bytes` and `aero_storage_piece_reads_total` (every piece read
//! from storage, cached or not).

use crate::files::OpenFiles;
use crate::metrics::Metrics;
use aero_chunked::read::{read_piece, Piece, Plan};
use aero_plugin_api::backend::Storage;
use axum::body::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What identifies a cached piece: the object, the byte range and the content tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PieceKey {
    key: String,
    start: u64,
    end: u64,
    tag: Arc<str>,
}

impl PieceKey {
    fn of(piece: &Piece) -> Self {
        PieceKey {
            key: piece.key.clone(),
            start: piece.start,
            end: piece.end,
            tag: Arc::clone(&piece.tag),
        }
    }
}

#[derive(Clone)]
struct ByLength;

impl Weighter<PieceKey, Bytes> for ByLength {
    fn weight(&self, key: &PieceKey, value: &Bytes) -> u64 {
        (value.len() + key.key.len() + key.tag.len()) as u64
    }
}

/// The largest piece a body reads at once.
pub const STREAM_PIECE: u64 = 256 * 1024;

/// Pieces a body reads ahead of what it has sent.
pub const READ_AHEAD: usize = 2;

/// The largest first piece of a range, read and cached whole (a range of up to 1 MiB costs one
/// read and one cache entry).
pub const FIRST_RANGE_PIECE: u64 = 1024 * 1024;

/// `piece` cut after its first `len` bytes: the head, and the rest when there is any.
fn cut(piece: Piece, len: u64) -> (Piece, Option<Piece>) {
    let at = piece.end.min(piece.start + len);
    let rest = (at < piece.end).then(|| Piece {
        key: piece.key.clone(),
        start: at,
        end: piece.end,
        tag: Arc::clone(&piece.tag),
    });
    (Piece { end: at, ..piece }, rest)
}

/// `piece` cut into pieces of at most [`STREAM_PIECE`].
fn split(piece: Piece) -> impl Iterator<Item = Piece> {
    (piece.start..piece.end)
        .step_by(STREAM_PIECE as usize)
        .map(move |start| Piece {
            key: piece.key.clone(),
            start,
            end: piece.end.min(start + STREAM_PIECE),
            tag: Arc::clone(&piece.tag),
        })
}

/// Reads pieces of objects in one storage, through the piece cache.
#[derive(Clone)]
pub struct Pieces {
    storage: Arc<Storage>,
    files: Option<Arc<OpenFiles>>,
    cache: Option<Arc<Cache<PieceKey, Bytes, ByLength>>>,
    metrics: Arc<Metrics>,
}

impl Pieces {
    /// Pieces of `storage` with a cache of `cache_bytes` (none when 0), keeping at most
    /// `open_files` files open where objects are local files (none when 0: each read opens
    /// the object), counted in `metrics`.
    pub fn new(
        storage: Arc<Storage>,
        cache_bytes: u64,
        open_files: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let files = storage
            .local_files
            .clone()
            .filter(|_| open_files > 0)
            .map(|local| Arc::new(OpenFiles::new(local, open_files)));
        let cache = (cache_bytes > 0).then(|| {
            // The item estimate only sizes the index; weights bound the memory.
            Arc::new(Cache::with_weighter(
                (cache_bytes / (64 * 1024)).clamp(16, 1 << 20) as usize,
                cache_bytes,
                ByLength,
            ))
        });
        Pieces {
            storage,
            files,
            cache,
            metrics,
        }
    }

    /// Reads one piece from storage.
    async fn fetch(&self, piece: &Piece) -> std::io::Result<VecDeque<Bytes>> {
        self.metrics.piece_read();
        match &self.files {
            Some(files) => Ok(VecDeque::from([files.read(piece).await?])),
            None => read_piece(&self.storage, piece).await,
        }
    }

    /// Reads one piece into a buffer of exactly its size, as the cache must hold it: what
    /// storage returns can be a slice of a larger buffer (the fs backend reads into pooled
    /// 256 KiB buffers), which a cached 1-byte piece would keep whole, far beyond the weight the
    /// cache counts. An open-file read is one exact buffer already and is not copied.
    async fn fetch_owned(&self, piece: &Piece) -> std::io::Result<Bytes> {
        let mut parts = self.fetch(piece).await?;
        if self.files.is_some() && parts.len() == 1 {
            return Ok(parts.pop_front().expect("one part"));
        }
        let mut owned = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in &parts {
            owned.extend_from_slice(part);
        }
        Ok(Bytes::from(owned))
    }

    /// Bytes the cache holds now.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    /// Reads one piece; through the cache when `cached` (and there is one).
    async fn read(&self, piece: &Piece, cached: bool) -> std::io::Result<VecDeque<Bytes>> {
        let Some(cache) = self.cache.as_ref().filter(|_| cached) else {
            return self.fetch(piece).await;
        };
        let key = PieceKey::of(piece);
        if let Some(bytes) = cache.get(&key) {
            self.metrics.piece_cache(true);
            return Ok(VecDeque::from([bytes]));
        }
        self.metrics.piece_cache(false);
        let bytes = self.fetch_owned(piece).await?;
        cache.insert(key, bytes.clone());
        Ok(VecDeque::from([bytes]))
    }

    /// The body of `plan`, `total` bytes long: a range (`cache_all`) with its first
    /// [`FIRST_RANGE_PIECE`] in one piece and the rest in pieces of [`STREAM_PIECE`], every one
    /// through the cache; a full body with its first piece whole through the cache, the rest in
    /// pieces of [`STREAM_PIECE`] past it. Bytes sent are counted for `image_id`.
    pub async fn body(
        &self,
        mut plan: Plan,
        total: u64,
        cache_all: bool,
        image_id: &str,
    ) -> std::io::Result<SizedBody> {
        let (first, rest): (Option<Piece>, Box<dyn Iterator<Item = Piece> + Send>) = if cache_all {
            match plan.next().map(|head| cut(head, FIRST_RANGE_PIECE)) {
                Some((first, tail)) => (
                    Some(first),
                    Box::new(tail.into_iter().chain(plan).flat_map(split)),
                ),
                None => (None, Box::new(std::iter::empty())),
            }
        } else {
            (plan.next(), Box::new(plan.flat_map(split)))
        };
        let ready = match first {
            Some(first) => self.read(&first, true).await?,
            None => VecDeque::new(),
        };
        let this = self.clone();
        let rest = futures::stream::iter(rest)
            .map(move |p| {
                let this = this.clone();
                async move { this.read(&p, cache_all).await }
            })
            .buffered(READ_AHEAD)
            .boxed();
        Ok(SizedBody {
            ready,
            rest: Some(rest),
            remaining: total,
            sent: 0,
            metrics: Arc::clone(&self.metrics),
            image_id: image_id.to_string(),
        })
    }
}

/// A response body of an exact length (so HTTP/1.1 uses `Content-Length` framing) that sends
/// what was read up front, then reads the rest from storage piece by piece.
pub struct SizedBody {
    ready: VecDeque<Bytes>,
    rest: Option<BoxStream<'static, std::io::Result<VecDeque<Bytes>>>>,
    remaining: u64,
    sent: u64,
    metrics: Arc<Metrics>,
    image_id: String,
}

impl Drop for SizedBody {
    fn drop(&mut self) {
        self.metrics.bytes_served(&self.image_id, self.sent);
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

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::backend::{build_storage, Settings};

    fn piece(key: &str, tag: &str) -> Piece {
        Piece {
            key: key.to_string(),
            start: 0,
            end: 4,
            tag: Arc::from(tag),
        }
    }

    fn pieces(cache_bytes: u64) -> (Pieces, Arc<Metrics>) {
        let storage =
            Arc::new(build_storage(&backend_memory::MemoryBackend, &Settings::new()).unwrap());
        let metrics = Arc::new(Metrics::new("t", 10));
        (
            Pieces::new(storage, cache_bytes, 16, Arc::clone(&metrics)),
            metrics,
        )
    }

    #[tokio::test]
    async fn hits_only_for_the_same_object_range_and_tag() {
        let (p, m) = pieces(1 << 20);
        p.storage.operator.write("a", vec![7u8; 8]).await.unwrap();
        p.storage.operator.write("b", vec![8u8; 8]).await.unwrap();
        for _ in 0..2 {
            let got = p.read(&piece("a", "t1"), true).await.unwrap();
            assert_eq!(got[0], Bytes::from_static(&[7, 7, 7, 7]));
        }
        p.read(&piece("a", "t2"), true).await.unwrap();
        p.read(&piece("b", "t1"), true).await.unwrap();
        let text = m.render(p.cached_bytes());
        assert!(
            text.contains("aero_storage_piece_cache_hits_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("aero_storage_piece_cache_misses_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("aero_storage_piece_reads_total 3\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_cache_reads_storage_every_time() {
        let (p, m) = pieces(0);
        p.storage.operator.write("a", vec![7u8; 8]).await.unwrap();
        for _ in 0..3 {
            p.read(&piece("a", "t"), true).await.unwrap();
        }
        let text = m.render(p.cached_bytes());
        assert!(
            text.contains("aero_storage_piece_cache_hits_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("aero_storage_piece_reads_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("aero_storage_piece_cache_bytes 0\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stays_within_its_byte_budget() {
        let (p, _) = pieces(64 * 1024);
        for i in 0..100 {
            let key = format!("k{i}");
            p.storage
                .operator
                .write(&key, vec![0u8; 4096])
                .await
                .unwrap();
            let mut big = piece(&key, "t");
            big.end = 4096;
            p.read(&big, true).await.unwrap();
        }
        assert!(p.cached_bytes() <= 64 * 1024);
    }

    /// Every frame of `body`.
    async fn frames(mut body: SizedBody) -> Vec<usize> {
        use http_body::Body;
        let mut lens = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            lens.push(frame.unwrap().into_data().unwrap().len());
        }
        lens
    }

    #[tokio::test]
    async fn a_cached_chunk_is_sent_whole_without_storage_reads() {
        use aero_chunked::read::{Origin, PIECE};
        let (p, m) = pieces(64 << 20);
        p.storage
            .operator
            .write("c", vec![3u8; PIECE as usize])
            .await
            .unwrap();
        let plan = || Plan::new(Origin::Raw("c".into()), 0, PIECE, Arc::from("t"));
        let first = p.body(plan(), PIECE, false, "i").await.unwrap();
        assert_eq!(frames(first).await.iter().sum::<usize>(), PIECE as usize);
        let again = p.body(plan(), PIECE, false, "i").await.unwrap();
        assert_eq!(frames(again).await, [PIECE as usize]);
        let text = m.render(p.cached_bytes());
        assert!(
            text.contains("aero_storage_piece_reads_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("aero_storage_piece_cache_hits_total 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_range_reads_its_first_mib_in_one_piece_then_streams() {
        use aero_chunked::read::Origin;
        let (p, m) = pieces(64 << 20);
        p.storage
            .operator
            .write("r", vec![5u8; 3 << 20])
            .await
            .unwrap();
        let plan = |start, end| Plan::new(Origin::Raw("r".into()), start, end, Arc::from("t"));
        let one = p
            .body(
                plan(4096, 4096 + FIRST_RANGE_PIECE),
                FIRST_RANGE_PIECE,
                true,
                "i",
            )
            .await
            .unwrap();
        assert_eq!(frames(one).await, [FIRST_RANGE_PIECE as usize]);
        let two = p.body(plan(0, 2 << 20), 2 << 20, true, "i").await.unwrap();
        let piece = STREAM_PIECE as usize;
        assert_eq!(
            frames(two).await,
            [1 << 20, piece, piece, piece, piece],
            "the first MiB whole, then streamed pieces"
        );
        let text = m.render(p.cached_bytes());
        assert!(
            text.contains("aero_storage_piece_reads_total 6\n"),
            "{text}"
        );
    }

    /// Bytes the whole test process holds, for the memory regression test below.
    mod live {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::sync::atomic::{AtomicIsize, Ordering};

        pub static BYTES: AtomicIsize = AtomicIsize::new(0);

        pub struct Counting;

        // SAFETY: every call is forwarded to `System` unchanged; only the counter moves.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
                System.alloc(layout)
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
                System.dealloc(ptr, layout)
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                BYTES.fetch_add(
                    new_size as isize - layout.size() as isize,
                    Ordering::Relaxed,
                );
                System.realloc(ptr, layout, new_size)
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;
    }

    /// The soak's memory bug: storage reads on `fs` are slices of pooled buffers far larger than
    /// the piece, and a cache holding such slices kept every buffer whole while weighing only the
    /// piece. Many tiny cached pieces must hold about their own size, not a buffer each.
    #[tokio::test]
    async fn tiny_cached_pieces_hold_only_their_own_bytes() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new();
        settings.insert("root".into(), dir.path().to_str().unwrap().into());
        let storage = Arc::new(build_storage(&backend_fs::FsBackend, &settings).unwrap());
        const OBJECTS: usize = 256;
        for i in 0..OBJECTS {
            std::fs::write(dir.path().join(format!("o{i}")), vec![9u8; 1 << 20]).unwrap();
        }
        let metrics = Arc::new(Metrics::new("t", 10));
        // No open-file reads: every miss goes through the storage reader.
        let p = Pieces::new(storage, 64 << 20, 0, metrics);
        let before = live::BYTES.load(Ordering::Relaxed);
        // A busy server's mix: a tiny cached range, then a large uncached read that does not fit
        // in what is left of the pooled buffer the tiny one was cut from.
        for i in 0..OBJECTS {
            let key = format!("o{i}");
            let got = p.read(&piece(&key, "t"), true).await.unwrap();
            assert_eq!(got[0], Bytes::from_static(&[9, 9, 9, 9]));
            let mut large = piece(&key, "t");
            large.end = STREAM_PIECE;
            p.read(&large, false).await.unwrap();
        }
        // Every piece stays cached (its weight counts the key too).
        assert!(p.cached_bytes() as usize >= OBJECTS * 4);
        let held = live::BYTES.load(Ordering::Relaxed) - before;
        // A pooled buffer per piece is 64 MiB (67,429,052 bytes measured with slices cached);
        // the exact pieces and the cache's index hold about 0.3 MiB. Other tests of this binary
        // run at the same time, hence the margin.
        assert!(
            held < 8 << 20,
            "{OBJECTS} cached 4-byte pieces hold {held} bytes"
        );
    }

    #[test]
    fn pieces_are_cut_to_the_stream_size() {
        let mut big = piece("k", "t");
        big.start = 10;
        big.end = 10 + 2 * STREAM_PIECE + 5;
        let cut: Vec<(u64, u64)> = split(big).map(|p| (p.start, p.end)).collect();
        assert_eq!(
            cut,
            [
                (10, 10 + STREAM_PIECE),
                (10 + STREAM_PIECE, 10 + 2 * STREAM_PIECE),
                (10 + 2 * STREAM_PIECE, 15 + 2 * STREAM_PIECE)
            ]
        );
    }
}
