//! Unsupported features are refused with messages naming them, and damaged images (flipped
//! bytes, truncation) produce errors, never panics.

mod common;

use aero_plugin_api::{ByteSource, ErrorKind, MemorySource, VirtualDisk};
use common::{create, qemu_io, registry, require_qemu, scratch};
use std::sync::Arc;

fn open_bytes(bytes: Vec<u8>) -> aero_plugin_api::Result<Arc<dyn VirtualDisk>> {
    let source: Arc<dyn ByteSource> = Arc::new(MemorySource::new("damaged.qcow2", bytes));
    aero_plugin_testkit::open_source(&registry(), source, Some("qcow2"), false).map(|o| o.disk)
}

/// A 1 MiB v3 image with a few writes, made by qemu-img.
fn small_image(test: &str, options: &str) -> Vec<u8> {
    let dir = scratch(test);
    create(&dir, "t.qcow2", options, "1M");
    qemu_io(
        &dir,
        "t.qcow2",
        &[
            "write -P 0x11 0 4k",
            "write -z 64k 64k",
            "write -P 0x22 300k 9k",
        ],
    );
    std::fs::read(dir.join("t.qcow2")).unwrap()
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn refuses_features_naming_them() {
    require_qemu();
    let image = small_image("refusals", "");
    let cases: &[(usize, u8, ErrorKind, &str)] = &[
        (79, 2, ErrorKind::Unsupported, "bit 1, corrupt"),
        (79, 4, ErrorKind::Unsupported, "bit 2, external data file"),
        (
            78,
            4,
            ErrorKind::Unsupported,
            "unknown incompatible feature bit(s) 10",
        ),
        (72, 0x80, ErrorKind::Unsupported, "bit(s) 63"),
        (
            35,
            1,
            ErrorKind::Unsupported,
            "encrypted images are not supported",
        ),
        (35, 2, ErrorKind::Unsupported, "LUKS"),
        (79, 8, ErrorKind::Corrupt, "bit 3 (compression type)"),
        (7, 7, ErrorKind::Unsupported, "version 4"),
        (23, 6, ErrorKind::Unsupported, "cluster_bits 22"),
        (99, 0x0f, ErrorKind::Corrupt, "refcount_order 11"),
        (39, 1, ErrorKind::Corrupt, "too few"),
        (
            41,
            0x10,
            ErrorKind::Corrupt,
            "lies past the end of the file",
        ),
    ];
    for &(at, bits, kind, needle) in cases {
        let mut bytes = image.clone();
        bytes[at] ^= bits;
        let err = open_bytes(bytes).err().unwrap();
        assert_eq!(err.kind(), kind, "{needle}: {err}");
        assert!(
            err.message().contains(needle),
            "expected '{needle}' in: {err}"
        );
        assert!(err.message().starts_with("damaged.qcow2: "), "{err}");
    }
}

#[test]
fn bad_l1_and_l2_entries_are_errors() {
    require_qemu();
    let image = small_image("bad_entries", "cluster_size=4k");
    let l1 = be64(&image, 40) as usize;
    let l2 = (be64(&image, l1) & 0x00ff_ffff_ffff_fe00) as usize;

    let mut past_end = image.clone();
    past_end[l1 + 1] = 0x10;
    let err = open_bytes(past_end).err().unwrap();
    assert!(
        err.message().contains("L1 entry 0: L2 table at offset"),
        "{err}"
    );

    let mut unaligned = image.clone();
    unaligned[l2 + 6] |= 0x02;
    let disk = open_bytes(unaligned).unwrap();
    let err = disk.read_at(0, &mut [0u8; 512]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("not cluster-aligned"), "{err}");
    assert!(disk.read_at(4096 * 20, &mut [0u8; 512]).is_ok());
}

#[test]
fn out_of_range_reads_and_queries_are_errors() {
    require_qemu();
    let disk = open_bytes(small_image("out_of_range", "")).unwrap();
    let cap = disk.capacity();
    assert_eq!(
        disk.read_at(cap - 1, &mut [0u8; 2]).unwrap_err().kind(),
        ErrorKind::OutOfBounds
    );
    assert!(disk.read_at(u64::MAX, &mut [0u8; 2]).is_err());
    assert!(disk.read_at(cap, &mut []).is_ok());
    assert!(disk.block_status(cap, 1).is_err());
    assert!(disk.block_status(1, u64::MAX).is_err());
    assert!(disk.block_status(cap, 0).unwrap().is_empty());
}

/// Reads everything a damaged image offers; errors are fine, panics are not.
fn exercise(bytes: Vec<u8>) {
    if let Ok(disk) = open_bytes(bytes) {
        let mut buf = vec![0u8; 64 << 10];
        // The first 8 MiB and the last 64 KiB (a flipped size may make the disk huge).
        let cap = disk.capacity();
        let tail = cap.saturating_sub(buf.len() as u64).max(8 << 20);
        let mut pos = 0;
        while pos < cap {
            let n = (cap - pos).min(buf.len() as u64) as usize;
            let _ = disk.read_at(pos, &mut buf[..n]);
            pos = if pos + (n as u64) < 8 << 20 {
                pos + n as u64
            } else {
                tail.max(pos + n as u64)
            };
        }
        let _ = disk.block_status(0, cap.min(1 << 30));
        let _ = disk.info();
    }
}

#[test]
fn flipped_bytes_and_truncation_never_panic() {
    require_qemu();
    let images = [
        small_image("fuzz_plain", "cluster_size=512"),
        small_image("fuzz_extl2", "extended_l2=on,cluster_size=16k"),
        small_image("fuzz_v2", "compat=0.10,cluster_size=4k"),
        {
            let dir = scratch("fuzz_compressed");
            create(
                &dir,
                "t.qcow2",
                "cluster_size=4k,compression_type=zstd",
                "1M",
            );
            qemu_io(
                &dir,
                "t.qcow2",
                &["write -c -P 0x5a 0 64k", "write -c 512k 8k"],
            );
            std::fs::read(dir.join("t.qcow2")).unwrap()
        },
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for image in &images {
        for len in (0..image.len()).step_by(image.len() / 97 + 1) {
            exercise(image[..len].to_vec());
        }
        for _ in 0..1000 {
            let mut bytes = image.clone();
            for _ in 0..1 + random() % 4 {
                // Mostly metadata (the first clusters), sometimes anywhere.
                let span = if random() % 4 == 0 {
                    bytes.len()
                } else {
                    bytes.len().min(16384)
                };
                let at = (random() % span as u64) as usize;
                bytes[at] ^= 1 << (random() % 8);
            }
            exercise(bytes);
        }
    }
}

#[test]
fn short_last_data_cluster_reads_zeros_like_qemu() {
    require_qemu();
    let dir = scratch("short_last_cluster");
    create(&dir, "t.qcow2", "", "1M");
    qemu_io(&dir, "t.qcow2", &["write -P 0x11 0 1M"]);
    let path = dir.join("t.qcow2");
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 1000]).unwrap();
    let disk = common::open(&path, false).unwrap();
    common::assert_matches_qemu(&dir, "t.qcow2", disk.as_ref());

    let missing_cluster = full[..full.len() - 65536 - 1000].to_vec();
    let disk = open_bytes(missing_cluster).unwrap();
    let err = disk.read_at(0, &mut vec![0u8; 1 << 20]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("data cluster at offset"), "{err}");
}
