//! Reading an image's bytes as pieces: a byte range of a raw object or of a published image
//! becomes reads of at most [`PIECE`] bytes, each within one object, each checked for length.

use crate::resolve::LoadedManifest;
use aero_plugin_api::backend::Storage;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// Largest single storage read.
pub const PIECE: u64 = 4 * 1024 * 1024;

/// Where an image's bytes are.
#[derive(Debug, Clone)]
pub enum Origin {
    /// One raw object.
    Raw(String),
    /// The chunks of a published image.
    Chunked(Arc<LoadedManifest>),
}

/// The pieces that make up bytes `pos..end` of an image: one raw object, or the chunks of a
/// published image, at most [`PIECE`] bytes each.
pub struct Plan {
    source: Origin,
    pos: u64,
    end: u64,
    tag: Arc<str>,
}

impl Plan {
    /// Bytes `start..end` of `source`, whose content is identified by `tag` (its validators).
    pub fn new(source: Origin, start: u64, end: u64, tag: Arc<str>) -> Self {
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
            Origin::Raw(key) => Piece {
                key: key.clone(),
                start: self.pos,
                end: self.end.min(self.pos + PIECE),
                tag: Arc::clone(&self.tag),
            },
            Origin::Chunked(m) => {
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
pub async fn read_piece(storage: &Storage, p: &Piece) -> std::io::Result<VecDeque<Bytes>> {
    let buf = storage
        .operator
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

/// Whether a [`read_piece`] error means the object does not exist.
pub fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<aero_plugin_api::backend::opendal::Error>())
            .is_some_and(crate::store::is_not_found)
}
