//! A bounded in-memory cache of recently served pieces, keyed by object, range and the
//! object's validators, so hot ranges (boot sectors, popular chunks) are served from memory
//! the way a CDN edge would, without a storage round trip.

use aero_chunked::read::Piece;
use axum::body::Bytes;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::Arc;

/// What identifies a cached piece: the object, the byte range and the content tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PieceKey {
    key: String,
    start: u64,
    end: u64,
    tag: Arc<str>,
}

#[derive(Clone)]
struct ByLength;

impl Weighter<PieceKey, Bytes> for ByLength {
    fn weight(&self, key: &PieceKey, value: &Bytes) -> u64 {
        (value.len() + key.key.len() + key.tag.len()) as u64
    }
}

/// Pieces up to a total number of bytes.
pub struct PieceCache {
    cache: Cache<PieceKey, Bytes, ByLength>,
}

impl PieceCache {
    /// A cache holding at most `capacity` bytes; `None` when `capacity` is 0.
    pub fn new(capacity: u64) -> Option<Self> {
        (capacity > 0).then(|| PieceCache {
            // The item estimate only sizes the index; weights bound the memory.
            cache: Cache::with_weighter(
                (capacity / (64 * 1024)).clamp(16, 1 << 20) as usize,
                capacity,
                ByLength,
            ),
        })
    }

    fn key(piece: &Piece) -> PieceKey {
        PieceKey {
            key: piece.key.clone(),
            start: piece.start,
            end: piece.end,
            tag: Arc::clone(&piece.tag),
        }
    }

    /// The cached bytes of `piece`.
    pub fn get(&self, piece: &Piece) -> Option<Bytes> {
        self.cache.get(&Self::key(piece))
    }

    /// Remembers the bytes of `piece`.
    pub fn insert(&self, piece: &Piece, bytes: Bytes) {
        self.cache.insert(Self::key(piece), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(key: &str, tag: &str) -> Piece {
        Piece {
            key: key.to_string(),
            start: 0,
            end: 4,
            tag: Arc::from(tag),
        }
    }

    #[test]
    fn hits_only_for_the_same_object_range_and_tag() {
        let cache = PieceCache::new(1 << 20).unwrap();
        cache.insert(&piece("a", "t1"), Bytes::from_static(b"abcd"));
        assert_eq!(
            cache.get(&piece("a", "t1")).unwrap(),
            Bytes::from_static(b"abcd")
        );
        assert!(cache.get(&piece("a", "t2")).is_none());
        assert!(cache.get(&piece("b", "t1")).is_none());
        assert!(PieceCache::new(0).is_none());
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let cache = PieceCache::new(64 * 1024).unwrap();
        for i in 0..100 {
            let p = piece(&format!("k{i}"), "t");
            cache.insert(&p, Bytes::from(vec![0u8; 4096]));
        }
        assert!(cache.cache.weight() <= 64 * 1024);
    }
}
