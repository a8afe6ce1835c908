//! The cache's properties, on a real directory.

use aero_chunk_cache::ChunkCache;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn chunk(seed: u8, len: usize) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (digest(&bytes), bytes)
}

fn entry_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("objects").join(&digest[..2]).join(digest)
}

#[test]
fn default_dir_is_under_the_user_cache_dir() {
    assert_eq!(
        ChunkCache::default_dir(Path::new("/home/u/.cache")),
        PathBuf::from("/home/u/.cache/aero-host/chunks")
    );
}

#[test]
fn put_then_get_returns_the_bytes_and_contains_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
    let (d, bytes) = chunk(1, 4096);
    assert!(!cache.contains(&d));
    assert_eq!(cache.get(&d).unwrap(), None);
    cache.put(&d, &bytes).unwrap();
    assert!(cache.contains(&d));
    assert_eq!(cache.get(&d).unwrap(), Some(bytes));
    assert_eq!(cache.size().unwrap(), 4096);
    // Reopening sees what is there.
    let again = ChunkCache::open(dir.path(), 1 << 20).unwrap();
    assert!(again.contains(&d));
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_corrupt_entry_is_removed_and_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
    let (d, bytes) = chunk(2, 4096);
    cache.put(&d, &bytes).unwrap();
    let path = entry_path(dir.path(), &d);
    let mut damaged = bytes.clone();
    damaged[100] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert_eq!(cache.get(&d).unwrap(), None);
    assert!(!path.exists(), "the damaged entry is removed");
    // A truncated entry too.
    cache.put(&d, &bytes).unwrap();
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert_eq!(cache.get(&d).unwrap(), None);
    assert!(!cache.contains(&d));
    // And a good copy can be stored again.
    cache.put(&d, &bytes).unwrap();
    assert_eq!(cache.get(&d).unwrap(), Some(bytes));
}

#[test]
fn a_digest_that_is_not_lowercase_hex_sha256_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), 1 << 20).unwrap();
    for bad in [
        "",
        "abc",
        &"A".repeat(64),
        &format!("../{}", "a".repeat(61)),
    ] {
        let err = cache.get(bad).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        assert!(err.to_string().contains("not a lowercase hex sha256"));
        assert!(cache.put(bad, b"x").is_err());
        assert!(!cache.contains(bad));
    }
}

#[test]
fn the_size_cap_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    // Room for four 1000-byte chunks.
    let cache = ChunkCache::open(dir.path(), 4000).unwrap();
    let chunks: Vec<_> = (0..5).map(|i| chunk(i, 1000)).collect();
    for (d, b) in &chunks[..4] {
        cache.put(d, b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Use chunk 0: chunk 1 becomes the least recently used.
    assert!(cache.get(&chunks[0].0).unwrap().is_some());
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.put(&chunks[4].0, &chunks[4].1).unwrap();
    assert!(cache.size().unwrap() <= 4000);
    assert!(
        !cache.contains(&chunks[1].0),
        "the least recently used is gone"
    );
    assert!(cache.contains(&chunks[0].0), "the recently read one stays");
    assert!(cache.contains(&chunks[4].0), "the new one stays");
}

#[test]
fn a_chunk_larger_than_the_capacity_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), 100).unwrap();
    let (d, b) = chunk(9, 1000);
    cache.put(&d, &b).unwrap();
    assert!(!cache.contains(&d));
    assert_eq!(cache.size().unwrap(), 0);
}

#[test]
fn stale_temporary_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    ChunkCache::open(dir.path(), 1 << 20).unwrap();
    let stale = dir.path().join("tmp").join("left-by-a-killed-process");
    let fresh = dir.path().join("tmp").join("being-written-now");
    std::fs::write(&stale, b"x").unwrap();
    std::fs::write(&fresh, b"x").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    ChunkCache::open(dir.path(), 1 << 20).unwrap();
    assert!(!stale.exists());
    assert!(fresh.exists(), "another process may be writing it");
}

/// Two processes at once: the test re-runs its own binary as writers and readers on one
/// directory, with a cap small enough that they evict each other's entries all along.
#[test]
fn two_processes_at_once_read_only_verified_bytes_and_keep_the_cap() {
    if let Ok(dir) = std::env::var("AERO_CHUNK_CACHE_CHILD") {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "two_processes_at_once_read_only_verified_bytes_and_keep_the_cap",
                    "--nocapture",
                ])
                .env("AERO_CHUNK_CACHE_CHILD", dir.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child failed");
    }
    // Each put past the recount share recounts under the lock, and the last one of all saw
    // every entry: the cap holds exactly.
    let cache = ChunkCache::open(dir.path(), CHILD_CAP).unwrap();
    let size = cache.size().unwrap();
    assert!(
        size <= CHILD_CAP,
        "{size} bytes in a {CHILD_CAP}-byte cache"
    );
    assert!(size > 0);
}

const CHILD_CAP: u64 = 64 * 1024;

fn child(dir: &Path) {
    let cache = ChunkCache::open(dir, CHILD_CAP).unwrap();
    let mut hits = 0;
    // 96 KiB of chunks in a 64 KiB cache: some reads hit, some miss.
    let chunks: Vec<_> = (0..12u8).map(|i| chunk(i, 8 * 1024)).collect();
    for round in 0..20 {
        for (i, (d, b)) in chunks.iter().enumerate() {
            if (i + round) % 2 == 0 {
                cache.put(d, b).unwrap();
            } else if let Some(got) = cache.get(d).unwrap() {
                assert_eq!(&got, b, "a hit returns exactly the chunk's bytes");
                hits += 1;
            }
        }
    }
    assert!(hits > 0, "the readers found entries");
}
