//! `manifest.json`: parsing, validation (SPEC 1.4) and serialisation.

use super::{CHUNK_INDEX_WIDTH, CHUNK_MIME, MANIFEST_SCHEMA};
use crate::error::invalid;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Largest chunk size readers accept (64 MiB).
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Largest manifest body readers accept (64 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
/// Default largest chunk count.
pub const DEFAULT_MAX_CHUNKS: u64 = 500_000;

/// The prefix of a version that authenticates its manifest ([`manifest_version`]).
pub const MANIFEST_VERSION_PREFIX: &str = "mh1-";

/// The first line of the text [`manifest_version`] digests.
const MANIFEST_VERSION_DOMAIN: &str = "aero.chunked-disk-image.manifest-digest.v1";

/// The version `mh1-<hex>` that authenticates a manifest: the sha256 of the UTF-8 text
///
/// ```text
/// aero.chunked-disk-image.manifest-digest.v1\n
/// totalSize <totalSize>\n
/// chunkSize <chunkSize>\n
/// chunkCount <chunkCount>\n
/// <size of chunk 0> <lowercase hex sha256 of chunk 0>\n
/// … one line per chunk, in index order
/// ```
///
/// (decimal integers). Any change of geometry, of a chunk's size or of its digest changes it.
pub fn manifest_version<'a>(
    total_size: u64,
    chunk_size: u64,
    chunks: impl ExactSizeIterator<Item = (u64, &'a str)>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{MANIFEST_VERSION_DOMAIN}\ntotalSize {total_size}\nchunkSize {chunk_size}\nchunkCount {}\n",
        chunks.len()
    ));
    for (size, sha256) in chunks {
        hasher.update(format!("{size} {}\n", sha256.to_ascii_lowercase()));
    }
    format!(
        "{MANIFEST_VERSION_PREFIX}{}",
        hex::encode(hasher.finalize())
    )
}

/// One chunk's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex sha256 of the chunk bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The chunk is all zeros (an aero-host extension v1 readers ignore).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero: bool,
}

/// A v1 manifest, with keys in the publisher's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// Image id.
    #[serde(default)]
    pub image_id: String,
    /// Opaque version (`sha256-<hex>` when content-addressed).
    pub version: String,
    /// MIME type of chunk objects.
    pub mime_type: String,
    /// Guest-visible disk size.
    pub total_size: u64,
    /// Chunk size.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Digits in chunk object names.
    pub chunk_index_width: u32,
    /// Per-chunk size and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<ChunkEntry>>,
}

/// Limits a reader applies on top of the format's rules.
#[derive(Debug, Clone, Copy)]
pub struct ManifestLimits {
    /// Largest accepted `chunkCount`.
    pub max_chunks: u64,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_chunks: DEFAULT_MAX_CHUNKS,
        }
    }
}

fn digits(n: u64) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}

impl Manifest {
    /// A manifest for a published disk.
    pub fn new(
        image_id: &str,
        version: &str,
        total_size: u64,
        chunk_size: u64,
        chunks: Vec<ChunkEntry>,
    ) -> Self {
        Manifest {
            schema: MANIFEST_SCHEMA.to_string(),
            image_id: image_id.to_string(),
            version: version.to_string(),
            mime_type: CHUNK_MIME.to_string(),
            total_size,
            chunk_size,
            chunk_count: chunks.len() as u64,
            chunk_index_width: CHUNK_INDEX_WIDTH,
            chunks: Some(chunks),
        }
    }

    /// Parses and validates manifest bytes.
    pub fn parse(bytes: &[u8], limits: ManifestLimits) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            invalid!(
                "manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} bytes allowed",
                bytes.len()
            );
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "manifest is not a valid v1 manifest".into(),
            source,
        })?;
        manifest.validate(limits)?;
        Ok(manifest)
    }

    /// The pretty-printed JSON the publisher writes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    /// Checks every rule of SPEC 1.4.
    pub fn validate(&self, limits: ManifestLimits) -> Result<()> {
        if self.schema != MANIFEST_SCHEMA {
            invalid!(
                "manifest schema is '{}', expected '{MANIFEST_SCHEMA}'",
                self.schema
            );
        }
        if self.image_id.trim().is_empty() {
            invalid!("manifest imageId is empty");
        }
        if self.version.trim().is_empty() {
            invalid!("manifest version is empty");
        }
        if self.mime_type.trim().is_empty() {
            invalid!("manifest mimeType is empty");
        }
        if self.total_size == 0 || self.total_size % 512 != 0 {
            invalid!(
                "manifest totalSize {} must be a positive multiple of 512",
                self.total_size
            );
        }
        if self.chunk_size == 0 || self.chunk_size % 512 != 0 || self.chunk_size > MAX_CHUNK_SIZE {
            invalid!(
                "manifest chunkSize {} must be a positive multiple of 512 and at most {MAX_CHUNK_SIZE}",
                self.chunk_size
            );
        }
        let expected_count = self.total_size.div_ceil(self.chunk_size);
        if self.chunk_count == 0 || self.chunk_count > limits.max_chunks {
            invalid!(
                "manifest chunkCount {} must be between 1 and {}",
                self.chunk_count,
                limits.max_chunks
            );
        }
        if self.chunk_count != expected_count {
            invalid!(
                "manifest chunkCount {} does not match ceil(totalSize / chunkSize) = {expected_count}",
                self.chunk_count
            );
        }
        let needed = digits(self.chunk_count - 1);
        if self.chunk_index_width == 0
            || self.chunk_index_width > 32
            || self.chunk_index_width < needed
        {
            invalid!(
                "manifest chunkIndexWidth {} must be between {needed} and 32",
                self.chunk_index_width
            );
        }
        if let Some(chunks) = &self.chunks {
            if chunks.len() as u64 != self.chunk_count {
                invalid!(
                    "manifest lists {} chunks but chunkCount is {}",
                    chunks.len(),
                    self.chunk_count
                );
            }
            for (i, chunk) in chunks.iter().enumerate() {
                let expected = self.chunk_len(i as u64);
                if let Some(size) = chunk.size {
                    if size != expected {
                        invalid!("manifest chunk {i} has size {size}, expected {expected}");
                    }
                }
                if let Some(digest) = &chunk.sha256 {
                    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                        invalid!("manifest chunk {i} sha256 '{digest}' is not 64 hex digits");
                    }
                }
            }
        }
        if self.version.starts_with(MANIFEST_VERSION_PREFIX) {
            self.authenticate()?;
        }
        Ok(())
    }

    /// Checks a manifest whose version is `mh1-…` against it: the version is the digest of
    /// the geometry and every chunk's size and sha256 ([`manifest_version`]), so a manifest
    /// changed in any of them is refused before any chunk is fetched.
    fn authenticate(&self) -> Result<()> {
        let version = &self.version;
        let chunks = self.chunks.as_deref().unwrap_or_default();
        if chunks.len() as u64 != self.chunk_count {
            invalid!("manifest version {version} needs the chunk list it authenticates");
        }
        if let Some(i) = chunks.iter().position(|c| c.sha256.is_none()) {
            invalid!("manifest version {version} authenticates chunk digests, but chunk {i} has no sha256");
        }
        let actual = manifest_version(
            self.total_size,
            self.chunk_size,
            chunks.iter().enumerate().map(|(i, c)| {
                (
                    self.chunk_len(i as u64),
                    c.sha256.as_deref().unwrap_or_default(),
                )
            }),
        );
        if &actual != version {
            invalid!(
                "manifest does not match its version {version} (its geometry and chunk digests give {actual}): \
                 it was altered or belongs to another version"
            );
        }
        Ok(())
    }

    /// The size of chunk `index` derived from the geometry.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index * self.chunk_size;
        self.chunk_size.min(self.total_size - start)
    }

    /// The expected lowercase sha256 of chunk `index`, when listed.
    pub fn chunk_sha256(&self, index: u64) -> Option<String> {
        self.chunks
            .as_ref()
            .and_then(|c| c.get(index as usize))
            .and_then(|c| c.sha256.as_ref())
            .map(|d| d.to_ascii_lowercase())
    }

    /// The object name of chunk `index` relative to the manifest (`chunks/00000042.bin`).
    pub fn chunk_name(&self, index: u64) -> String {
        crate::layout::chunk_name(index, self.chunk_index_width)
    }

    /// The index of the chunk whose file name (`00000042.bin`) is the canonical one of this
    /// manifest: the right width and an index below `chunkCount`.
    pub fn chunk_index(&self, file_name: &str) -> Option<u64> {
        crate::layout::parse_chunk_file_name(file_name, self.chunk_index_width)
            .filter(|&index| index < self.chunk_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let chunks = vec![
            ChunkEntry {
                size: Some(4096),
                sha256: Some("a".repeat(64)),
                zero: false,
            },
            ChunkEntry {
                size: Some(4096),
                sha256: Some("b".repeat(64)),
                zero: true,
            },
            ChunkEntry {
                size: Some(2048),
                sha256: Some("c".repeat(64)),
                zero: false,
            },
        ];
        Manifest::new("demo", "v1", 10240, 4096, chunks)
    }

    #[test]
    fn round_trips_in_publisher_key_order() {
        let m = sample();
        let json = String::from_utf8(m.to_json()).unwrap();
        let order = [
            "schema",
            "imageId",
            "version",
            "mimeType",
            "totalSize",
            "chunkSize",
            "chunkCount",
            "chunkIndexWidth",
            "chunks",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| json.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.contains("\n  \"schema\""));
        assert_eq!(
            Manifest::parse(json.as_bytes(), ManifestLimits::default()).unwrap(),
            m
        );
    }

    #[test]
    fn rejects_each_broken_rule() {
        let limits = ManifestLimits::default();
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|m| m.schema = "x".into()), "schema"),
            (Box::new(|m| m.version = " ".into()), "version"),
            (Box::new(|m| m.image_id = String::new()), "imageId"),
            (Box::new(|m| m.total_size = 10241), "totalSize"),
            (Box::new(|m| m.chunk_size = 1000), "chunkSize"),
            (Box::new(|m| m.chunk_size = 128 * 1024 * 1024), "chunkSize"),
            (Box::new(|m| m.chunk_count = 4), "chunkCount"),
            (Box::new(|m| m.chunk_index_width = 0), "chunkIndexWidth"),
            (Box::new(|m| m.chunk_index_width = 33), "chunkIndexWidth"),
            (
                Box::new(|m| m.chunks.as_mut().unwrap().pop().map(|_| ()).unwrap()),
                "lists 2 chunks",
            ),
            (
                Box::new(|m| m.chunks.as_mut().unwrap()[2].size = Some(4096)),
                "chunk 2 has size",
            ),
            (
                Box::new(|m| m.chunks.as_mut().unwrap()[1].sha256 = Some("xyz".into())),
                "sha256",
            ),
        ];
        for (mutate, needle) in cases {
            let mut m = sample();
            mutate(&mut m);
            let err = m.validate(limits).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let mut m = sample();
        assert!(m.validate(ManifestLimits { max_chunks: 2 }).is_err());
        m.chunks = None;
        m.validate(limits).unwrap();
    }

    /// `sample()` under the `mh1-` version of its own chunk list.
    fn authenticated() -> Manifest {
        let mut m = sample();
        let chunks = m.chunks.clone().unwrap();
        m.version = manifest_version(
            m.total_size,
            m.chunk_size,
            chunks
                .iter()
                .map(|c| (c.size.unwrap(), c.sha256.as_deref().unwrap())),
        );
        m
    }

    #[test]
    fn the_manifest_version_covers_every_digest_size_and_the_geometry() {
        let m = authenticated();
        assert!(m.version.starts_with("mh1-") && m.version.len() == 4 + 64);
        m.validate(ManifestLimits::default()).unwrap();
        let version = |sizes: &[u64], digests: &[&str], total: u64, chunk: u64| {
            manifest_version(
                total,
                chunk,
                sizes.iter().copied().zip(digests.iter().copied()),
            )
        };
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let base = version(&[4096, 4096, 2048], &[&a, &b, &c], 10240, 4096);
        assert_eq!(base, m.version);
        let d = "d".repeat(64);
        for other in [
            version(&[4096, 4096, 2048], &[&a, &d, &c], 10240, 4096),
            version(&[4096, 4096, 2048], &[&a, &c, &b], 10240, 4096),
            version(&[4096, 4096, 1536], &[&a, &b, &c], 10240, 4096),
            version(&[4096, 4096, 2048], &[&a, &b, &c], 10752, 4096),
            version(&[4096, 4096, 2048], &[&a, &b, &c], 10240, 8192),
            version(&[4096, 4096], &[&a, &b], 10240, 4096),
        ] {
            assert_ne!(other, base);
        }
        // Digests are compared as lowercase hex.
        let upper = c.to_ascii_uppercase();
        assert_eq!(
            version(&[4096, 4096, 2048], &[&a, &b, &upper], 10240, 4096),
            base
        );
    }

    #[test]
    fn a_manifest_that_does_not_match_its_version_is_refused() {
        let limits = ManifestLimits::default();
        let mut m = authenticated();
        m.chunks.as_mut().unwrap()[1].sha256 = Some("e".repeat(64));
        let err = m.validate(limits).unwrap_err().to_string();
        assert!(err.contains("does not match its version"), "{err}");
        let mut m = authenticated();
        m.chunks.as_mut().unwrap()[0].sha256 = None;
        let err = m.validate(limits).unwrap_err().to_string();
        assert!(err.contains("chunk 0 has no sha256"), "{err}");
        let mut m = authenticated();
        m.chunks = None;
        assert!(m.validate(limits).is_err());
        // Other versions are opaque, as before.
        let mut m = sample();
        m.version = "sha256-".to_string() + &"0".repeat(64);
        m.validate(limits).unwrap();
    }

    #[test]
    fn names_chunks_with_the_index_width() {
        let mut m = sample();
        assert_eq!(m.chunk_name(2), "chunks/00000002.bin");
        m.chunk_index_width = 2;
        assert_eq!(m.chunk_name(7), "chunks/07.bin");
        assert_eq!(m.chunk_len(2), 2048);
        assert!(Manifest::parse(b"{", ManifestLimits::default()).is_err());
    }
}
