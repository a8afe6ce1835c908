//! The lazy chunked export against chunks in a local directory: fetched once however many
//! read at once, verified before use, zero chunks never fetched, readahead bounded, the
//! in-memory cache bounded, the on-disk cache shared.

use aero_chunk_cache::ChunkCache;
use aero_chunked::format::{sha256_hex, ChunkEntry, Manifest};
use aero_chunked::source::Source;
use aero_nbd::{ChunkedExport, ChunkedSettings, Export, Metrics};
use aero_plugin_api::ExtentKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CHUNK: u64 = 64 * 1024;
/// Ten chunks (the last short); chunks 3 and 4 are zeros and have no file.
const SIZE: u64 = 9 * CHUNK + 4096;
const ZEROS: [u64; 2] = [3, 4];

/// Writes the chunks of a published image into `dir`; returns its manifest and bytes.
fn image(dir: &Path) -> (Manifest, Vec<u8>) {
    std::fs::create_dir_all(dir.join("chunks")).unwrap();
    let mut bytes = Vec::new();
    let mut entries = Vec::new();
    for index in 0..SIZE.div_ceil(CHUNK) {
        let len = CHUNK.min(SIZE - index * CHUNK) as usize;
        let chunk: Vec<u8> = if ZEROS.contains(&index) {
            vec![0; len]
        } else {
            (0..len)
                .map(|i| (i as u64 * 7 + index * 13) as u8)
                .collect()
        };
        if !ZEROS.contains(&index) {
            std::fs::write(dir.join(format!("chunks/{index:08}.bin")), &chunk).unwrap();
        }
        entries.push(ChunkEntry {
            size: Some(len as u64),
            sha256: Some(sha256_hex(&chunk)),
            zero: false,
        });
        bytes.extend_from_slice(&chunk);
    }
    (Manifest::new("disk", "v1", SIZE, CHUNK, entries), bytes)
}

fn export(
    dir: &Path,
    cache: Option<Arc<ChunkCache>>,
    settings: ChunkedSettings,
) -> (ChunkedExport, Arc<Metrics>, Vec<u8>) {
    let (manifest, bytes) = image(dir);
    let metrics = Arc::new(Metrics::default());
    let source = Source::File {
        dir: dir.to_path_buf(),
    };
    let export =
        ChunkedExport::new(manifest, source, cache, settings, Arc::clone(&metrics)).unwrap();
    (export, metrics, bytes)
}

fn no_readahead() -> ChunkedSettings {
    ChunkedSettings {
        readahead: 0,
        ..ChunkedSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_one_chunk_fetch_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (export, metrics, bytes) = export(dir.path(), None, no_readahead());
    let export = Arc::new(export);
    let reads = (0..32u64).map(|i| {
        let export = Arc::clone(&export);
        tokio::spawn(async move { (i, export.read(CHUNK + i * 512, 512).await.unwrap()) })
    });
    for read in futures::future::join_all(reads).await {
        let (i, data) = read.unwrap();
        let at = (CHUNK + i * 512) as usize;
        assert!(data[..] == bytes[at..at + 512]);
    }
    let m = metrics.snapshot();
    assert_eq!(m.chunks_fetched, 1);
    assert_eq!(m.memory_cache_hits, 31);
}

#[tokio::test]
async fn zero_chunks_are_holes_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let (export, metrics, bytes) = export(dir.path(), None, no_readahead());
    let all = export.read(0, SIZE as usize).await.unwrap();
    assert!(all == bytes);
    assert_eq!(metrics.snapshot().chunks_fetched, 8);
    assert_eq!(metrics.snapshot().zero_chunks, 2);
    let extents = export.block_status(CHUNK + 5, 5 * CHUNK).await.unwrap();
    let shape: Vec<_> = extents
        .iter()
        .map(|e| (e.offset, e.length, e.kind))
        .collect();
    assert_eq!(
        shape,
        [
            (CHUNK + 5, 2 * CHUNK - 5, ExtentKind::Data),
            (3 * CHUNK, 2 * CHUNK, ExtentKind::Zero),
            (5 * CHUNK, CHUNK + 5, ExtentKind::Data),
        ]
    );
    assert!(export.read(SIZE - 10, 11).await.is_err());
}

#[tokio::test]
async fn a_tampered_chunk_is_retried_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ChunkedSettings {
        attempts: 2,
        ..no_readahead()
    };
    let (export, metrics, _) = export(dir.path(), None, settings);
    let path = dir.path().join("chunks/00000002.bin");
    let mut chunk = std::fs::read(&path).unwrap();
    chunk[7] ^= 1;
    std::fs::write(&path, &chunk).unwrap();
    let err = export.read(2 * CHUNK, 4096).await.unwrap_err().to_string();
    assert!(
        err.contains("chunk 2") && err.contains("sha256") && err.contains("2 attempts"),
        "{err}"
    );
    assert_eq!(metrics.snapshot().verification_failures, 2);
    assert_eq!(metrics.snapshot().chunks_fetched, 0);
    // A short chunk too.
    std::fs::write(dir.path().join("chunks/00000005.bin"), b"short").unwrap();
    let err = export.read(5 * CHUNK, 512).await.unwrap_err().to_string();
    assert!(err.contains("size is 5 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_read_ahead_a_bounded_window() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ChunkedSettings {
        readahead: 2,
        ..ChunkedSettings::default()
    };
    let (export, metrics, _) = export(dir.path(), None, settings);
    export.read(0, CHUNK as usize).await.unwrap();
    // The first read is not known to be sequential: nothing is read ahead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metrics.snapshot().chunks_fetched, 1);
    export.read(CHUNK, CHUNK as usize).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Chunks 2 and 3 are the window; 3 is a zero chunk, never fetched.
    let m = metrics.snapshot();
    assert_eq!((m.chunks_fetched, m.chunks_prefetched), (3, 1), "{m:?}");
    export.read(2 * CHUNK, CHUNK as usize).await.unwrap();
    assert_eq!(metrics.snapshot().memory_cache_hits, 1);
}

#[tokio::test]
async fn the_memory_cache_is_bounded_and_the_disk_cache_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ChunkedSettings {
        memory_cache_bytes: CHUNK,
        ..no_readahead()
    };
    let cache = Arc::new(ChunkCache::open(dir.path().join("cache"), 1 << 30).unwrap());
    let (export, metrics, bytes) = export(dir.path(), Some(Arc::clone(&cache)), settings.clone());
    for index in [0, 1, 2, 0] {
        export.read(index * CHUNK, 512).await.unwrap();
        // The on-disk cache is written in the background.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = metrics.snapshot();
    assert_eq!((m.chunks_fetched, m.disk_cache_hits), (3, 1), "{m:?}");
    // Another export sharing the directory fetches nothing it holds.
    let metrics = Arc::new(Metrics::default());
    let (manifest, _) = image(dir.path());
    std::fs::remove_dir_all(dir.path().join("chunks")).unwrap();
    let source = Source::File {
        dir: dir.path().to_path_buf(),
    };
    let again = ChunkedExport::new(
        manifest,
        source,
        Some(cache),
        settings,
        Arc::clone(&metrics),
    )
    .unwrap();
    let data = again.read(0, 3 * CHUNK as usize).await.unwrap();
    assert!(data[..] == bytes[..3 * CHUNK as usize]);
    assert_eq!(metrics.snapshot().chunks_fetched, 0);
    assert_eq!(metrics.snapshot().disk_cache_hits, 3);
}
