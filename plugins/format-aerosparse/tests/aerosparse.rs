//! AeroSparse images made by the reference script read as their raw source; the writer
//! reproduces them; damaged images are refused with the SPEC 2.1 messages.

use aero_plugin_api::{
    ByteSource, DiskFormat, DiskInfo, Error, ErrorKind, Extent, ExtentKind, MemorySource,
    ProbeInput, ProbeResult, Registry, Result, VirtualDisk,
};
use format_aerosparse::{write_aerosparse, AeroSparseFormat};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn src_raw() -> &'static [u8] {
    static RAW: OnceLock<Vec<u8>> = OnceLock::new();
    RAW.get_or_init(|| std::fs::read(root().join("target/fixtures/src.raw")).unwrap())
}

fn scratch() -> PathBuf {
    let dir = root().join(format!(
        "target/format-aerosparse-tests-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An image of `src.raw` made by the reference script.
fn make_image(name: &str, block_size: u32, shuffle: Option<u32>) -> PathBuf {
    let out = scratch().join(name);
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("../shared/fixtures/make-aerosparse.py"))
        .arg(root().join("target/fixtures/src.raw"))
        .arg(&out)
        .args(["--block-size", &block_size.to_string()]);
    if let Some(seed) = shuffle {
        cmd.args(["--shuffle", &seed.to_string()]);
    }
    assert!(cmd.status().unwrap().success());
    out
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.add(Arc::new(AeroSparseFormat)).unwrap();
    registry
}

fn open_path(path: &Path) -> Result<Arc<dyn VirtualDisk>> {
    aero_plugin_testkit::open_path(&registry(), path, None, false).map(|o| o.disk)
}

fn open_bytes(name: &str, bytes: Vec<u8>) -> Result<Arc<dyn VirtualDisk>> {
    let source: Arc<dyn ByteSource> = Arc::new(MemorySource::new(name, bytes));
    aero_plugin_testkit::open_source(&registry(), source, Some("aerospar"), false).map(|o| o.disk)
}

fn sha_of_disk(disk: &dyn VirtualDisk) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut offset = 0;
    while offset < disk.capacity() {
        let n = (disk.capacity() - offset).min(buf.len() as u64) as usize;
        disk.read_at(offset, &mut buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// Compares every guest byte with the raw source (faster than hashing in debug builds).
fn assert_reads_as_raw(disk: &dyn VirtualDisk) {
    let raw = src_raw();
    assert_eq!(disk.capacity(), raw.len() as u64);
    let mut buf = vec![0u8; 4 << 20];
    for (i, expected) in raw.chunks(buf.len()).enumerate() {
        let n = expected.len();
        disk.read_at((i * buf.len()) as u64, &mut buf[..n]).unwrap();
        assert!(buf[..n] == *expected, "bytes differ in chunk {i}");
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn reads_equal_the_raw_source() {
    let raw = src_raw();
    for (block_size, shuffle) in [
        (65536, None),
        (4096, Some(7)),
        (512, None),
        (1 << 20, Some(3)),
    ] {
        let path = make_image(&format!("img-{block_size}.aerosparse"), block_size, shuffle);
        let disk = open_path(&path).unwrap();
        assert_eq!(disk.capacity(), raw.len() as u64);
        assert_eq!(disk.info().cluster_size, Some(u64::from(block_size)));
        assert_eq!(
            sha_of_disk(disk.as_ref()),
            sha(raw),
            "block size {block_size}"
        );
        for (offset, len) in [
            (1usize, 3usize),
            (block_size as usize - 5, 10),
            (1 << 20, 3 << 20),
            (raw.len() - 1, 1),
        ] {
            let mut buf = vec![0xee; len];
            disk.read_at(offset as u64, &mut buf).unwrap();
            assert_eq!(buf, raw[offset..offset + len]);
        }
        let mut buf = [0u8; 2];
        let err = disk.read_at(raw.len() as u64 - 1, &mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfBounds);
    }
}

#[test]
fn block_status_reports_unallocated_blocks_as_zero() {
    let raw = src_raw();
    let block = 65536usize;
    let disk = open_path(&make_image("status.aerosparse", block as u32, Some(1))).unwrap();
    let extents = disk.block_status(0, disk.capacity()).unwrap();
    let mut pos = 0;
    for extent in &extents {
        assert_eq!(extent.offset, pos);
        pos = extent.end();
        for b in (extent.offset as usize..extent.end() as usize).step_by(block) {
            let zero = raw[b..b + block].iter().all(|&x| x == 0);
            assert_eq!(zero, extent.kind == ExtentKind::Zero, "block at {b}");
        }
    }
    assert_eq!(pos, disk.capacity());
    assert!(extents.iter().any(|e| e.kind == ExtentKind::Zero));
    let part = disk.block_status(100, 1000).unwrap();
    assert_eq!((part[0].offset, part.last().unwrap().end()), (100, 1100));
}

#[test]
fn concurrent_reads_agree() {
    let disk = open_path(&make_image("threads.aerosparse", 65536, Some(9))).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let disk = Arc::clone(&disk);
            std::thread::spawn(move || assert_reads_as_raw(disk.as_ref()))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn probe_matches_the_magic_whatever_the_version() {
    let probe = |head: &[u8], len| AeroSparseFormat.probe(&ProbeInput::new(head, &[], len));
    let mut head = b"AEROSPAR".to_vec();
    head.extend_from_slice(&1u32.to_le_bytes());
    head.resize(64, 0);
    assert_eq!(probe(&head, 4096), ProbeResult::Match);
    assert_eq!(probe(&head[..8], 8), ProbeResult::Match);
    head[8] = 2;
    assert_eq!(probe(&head, 4096), ProbeResult::Match);
    assert_eq!(probe(&head, 40), ProbeResult::Match);
    assert_eq!(probe(b"AEROSPA", 7), ProbeResult::NoMatch);
    assert_eq!(probe(&[0u8; 64], 4096), ProbeResult::NoMatch);
}

fn small_image() -> Vec<u8> {
    std::fs::read(make_image("small-src.aerosparse", 1 << 20, Some(5))).unwrap()
}

fn refused(bytes: Vec<u8>, kind: ErrorKind, needle: &str) {
    let err = open_bytes("bad.aerosparse", bytes)
        .err()
        .expect("should fail");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.message().starts_with("bad.aerosparse: "), "{err}");
    assert!(err.message().contains(needle), "{err}");
}

fn set_entry(bytes: &mut [u8], index: usize, value: u64) {
    bytes[64 + 8 * index..72 + 8 * index].copy_from_slice(&value.to_le_bytes());
}

fn entry(bytes: &[u8], index: usize) -> u64 {
    u64::from_le_bytes(bytes[64 + 8 * index..72 + 8 * index].try_into().unwrap())
}

#[test]
fn damaged_images_are_refused_in_spec_order() {
    let image = small_image();
    let data_offset = u64::from_le_bytes(image[48..56].try_into().unwrap());
    let allocated = (0..64).find(|&i| entry(&image, i) != 0).unwrap();
    let other = (allocated + 1..64)
        .find(|&i| entry(&image, i) != 0)
        .unwrap();
    let unallocated = (0..64).find(|&i| entry(&image, i) == 0).unwrap();

    refused(
        image[..63].to_vec(),
        ErrorKind::Corrupt,
        "truncated sparse header",
    );
    refused(
        image[..100].to_vec(),
        ErrorKind::Corrupt,
        "allocation table",
    );
    refused(
        image[..image.len() - 1].to_vec(),
        ErrorKind::Corrupt,
        "truncated",
    );

    let mut big = image.clone();
    big[24..32].copy_from_slice(&(1u64 << 50).to_le_bytes());
    big[40..48].copy_from_slice(&(1u64 << 30).to_le_bytes());
    refused(
        big,
        ErrorKind::Unsupported,
        "aerosparse allocation table too large",
    );

    let mut b = image.clone();
    set_entry(&mut b, unallocated, 64);
    refused(
        b,
        ErrorKind::Corrupt,
        "data block offset before data region",
    );
    let mut b = image.clone();
    set_entry(&mut b, unallocated, data_offset + 512);
    refused(b, ErrorKind::Corrupt, "misaligned data block offset");
    let mut b = image.clone();
    set_entry(&mut b, unallocated, data_offset + (1 << 40));
    refused(b, ErrorKind::Corrupt, "data block offset out of bounds");
    let mut b = image.clone();
    set_entry(&mut b, other, entry(&image, allocated));
    refused(b, ErrorKind::Corrupt, "duplicate data block offset");
}

#[test]
fn truncated_and_flipped_images_never_panic() {
    let image = small_image();
    for cut in (0..image.len()).step_by(image.len() / 97) {
        assert!(
            open_bytes("cut.aerosparse", image[..cut].to_vec()).is_err(),
            "{cut}"
        );
    }
    for at in 0..600 {
        let mut bytes = image.clone();
        bytes[at] ^= 0xa5;
        if let Ok(disk) = open_bytes("flip.aerosparse", bytes) {
            let mut buf = vec![0u8; disk.capacity().min(1 << 27) as usize];
            let _ = disk.read_at(0, &mut buf);
            let _ = disk.block_status(0, disk.capacity());
        }
    }
}

#[test]
fn writer_reproduces_the_reference_layout() {
    let dir = scratch();
    let reference = make_image("ref-64k.aerosparse", 65536, None);
    let disk = open_path(&make_image("shuffled.aerosparse", 65536, Some(11))).unwrap();
    let out = dir.join("written.aerosparse");
    let summary = write_aerosparse(disk.as_ref(), &out, 65536).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    assert_eq!(summary.capacity, src_raw().len() as u64);
    assert_eq!(summary.file_size, std::fs::metadata(&out).unwrap().len());
    assert!(summary.allocated_blocks < summary.total_blocks);

    let resized = dir.join("written-4k.aerosparse");
    write_aerosparse(disk.as_ref(), &resized, 4096).unwrap();
    assert_eq!(
        sha_of_disk(open_path(&resized).unwrap().as_ref()),
        sha(src_raw())
    );
}

/// A disk of given bytes that claims `zero_claim` reads as zeros and fails reads past `fail_at`.
struct TestDisk {
    bytes: Vec<u8>,
    zero_claim: (u64, u64),
    fail_at: u64,
}

impl VirtualDisk for TestDisk {
    fn capacity(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset + buf.len() as u64 > self.fail_at {
            return Err(Error::io("test disk: read failed"));
        }
        buf.copy_from_slice(&self.bytes[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = offset + length;
        let (zs, ze) = self.zero_claim;
        let mut out = Vec::new();
        for (s, e, kind) in [
            (offset, zs.clamp(offset, end), ExtentKind::Data),
            (
                zs.clamp(offset, end),
                ze.clamp(offset, end),
                ExtentKind::Zero,
            ),
            (ze.clamp(offset, end), end, ExtentKind::Data),
        ] {
            if e > s {
                out.push(Extent::new(s, e - s, kind));
            }
        }
        Ok(out)
    }
    fn info(&self) -> DiskInfo {
        DiskInfo::default()
    }
}

#[test]
fn writer_skips_zero_blocks_and_handles_a_short_last_block() {
    let mut bytes = vec![0u8; 3 * 4096 + 1024];
    bytes[10] = 1; // block 0: data
    bytes[3 * 4096 + 1000] = 9; // short last block: data
    let disk = TestDisk {
        bytes: bytes.clone(),
        zero_claim: (4096, 8192),
        fail_at: u64::MAX,
    };
    let out = scratch().join("short.aerosparse");
    let summary = write_aerosparse(&disk, &out, 4096).unwrap();
    assert_eq!((summary.total_blocks, summary.allocated_blocks), (4, 2));
    let written = open_path(&out).unwrap();
    let mut view = vec![0u8; bytes.len()];
    written.read_at(0, &mut view).unwrap();
    assert_eq!(view, bytes);
}

#[test]
fn writer_failure_leaves_nothing_behind() {
    let dir = scratch().join("failing");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("fail.aerosparse");
    let disk = TestDisk {
        bytes: vec![1u8; 1 << 20],
        zero_claim: (0, 0),
        fail_at: 1 << 19,
    };
    let err = write_aerosparse(&disk, &out, 65536).unwrap_err();
    assert!(err.message().contains("read failed"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    let odd = TestDisk {
        bytes: vec![1u8; 1000],
        zero_claim: (0, 0),
        fail_at: u64::MAX,
    };
    let err = write_aerosparse(&odd, &out, 65536).unwrap_err();
    assert!(err.message().contains("multiple of 512"), "{err}");
    let err = write_aerosparse(&disk, &out, 1000).unwrap_err();
    assert!(err.message().contains("block size"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
