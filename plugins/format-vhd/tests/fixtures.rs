//! Fixed and dynamic VHD fixtures written by qemu read exactly as `qemu-img convert` does.

mod common;

use aero_plugin_api::{DiskFormat, ProbeInput, ProbeResult, VirtualDisk};
use common::*;
use format_vhd::VhdFormat;
use std::sync::Arc;

fn check_fixture(name: &str) -> Arc<dyn VirtualDisk> {
    let (size, sha) = expected(name);
    let disk = open(&fixtures().join(name), false).unwrap().disk;
    assert_eq!(disk.capacity(), size, "{name}");
    assert_eq!(disk_sha256(disk.as_ref()), sha, "{name}");
    disk
}

#[test]
fn fixed_matches_qemu() {
    let disk = check_fixture("fixed.vhd");
    assert_eq!(disk.info().cluster_size, None);
}

#[test]
fn dynamic_matches_qemu() {
    let disk = check_fixture("dynamic.vhd");
    assert_eq!(disk.info().cluster_size, Some(2 * 1024 * 1024));
    assert!(disk.info().backing_chain.is_empty());
}

#[test]
fn dynamic_sized_by_geometry_matches_qemu() {
    check_fixture("dynamic-chs.vhd");
}

#[test]
fn unaligned_reads_match_the_raw_source() {
    let raw = std::fs::read(fixtures().join("src.raw")).unwrap();
    for name in ["fixed.vhd", "dynamic.vhd"] {
        let disk = open(&fixtures().join(name), false).unwrap().disk;
        for (offset, len) in [
            (0u64, 1usize),
            (511, 2),
            (2 * 1024 * 1024 - 700, 1500),
            (33554432 - 3, 5 * 1024 * 1024 + 7),
            (raw.len() as u64 - 1, 1),
            (12345, 0),
        ] {
            let mut buf = vec![0xaa; len];
            disk.read_at(offset, &mut buf).unwrap();
            assert_eq!(
                buf,
                raw[offset as usize..offset as usize + len],
                "{name} {offset}"
            );
        }
        let mut buf = [0u8; 2];
        assert!(disk.read_at(raw.len() as u64 - 1, &mut buf).is_err());
        assert!(disk.read_at(u64::MAX, &mut buf).is_err());
        assert!(disk.block_status(raw.len() as u64, 1).is_err());
    }
}

#[test]
fn concurrent_reads_agree() {
    let disk = open(&fixtures().join("dynamic.vhd"), false).unwrap().disk;
    let whole = disk_sha256(disk.as_ref());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let disk = Arc::clone(&disk);
            std::thread::spawn(move || disk_sha256(disk.as_ref()))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), whole);
    }
}

#[test]
fn block_status_matches_qemu_map() {
    let disk = open(&fixtures().join("dynamic.vhd"), false).unwrap().disk;
    assert_eq!(
        status(disk.as_ref()),
        qemu_map(&fixtures().join("dynamic.vhd"), "vpc")
    );
    let part = disk.block_status(2 * 1024 * 1024 - 512, 1024).unwrap();
    assert_eq!(part.len(), 2);
    assert_eq!(part[0].offset, 2 * 1024 * 1024 - 512);
    assert_eq!(part[1].end(), 2 * 1024 * 1024 + 512);
    assert!(disk.block_status(0, 0).unwrap().is_empty());
}

#[test]
fn probe_recognises_vhd_only() {
    let format = VhdFormat;
    for (name, verdict) in [
        ("fixed.vhd", ProbeResult::Match),
        ("dynamic.vhd", ProbeResult::Match),
        ("dynamic-chs.vhd", ProbeResult::Match),
        ("src.raw", ProbeResult::NoMatch),
        ("v3.qcow2", ProbeResult::NoMatch),
        ("empty.raw", ProbeResult::NoMatch),
    ] {
        let source = aero_plugin_api::FileSource::open(fixtures().join(name)).unwrap();
        let got = ProbeInput::read(&source, |input| format.probe(&input)).unwrap();
        assert_eq!(got, verdict, "{name}");
    }
    let probe = |head: &[u8], len| format.probe(&ProbeInput::new(head, &[], len));
    assert_eq!(probe(b"conectix", 8), ProbeResult::Match);
    assert_eq!(probe(b"conectixabcdefgh", 300), ProbeResult::Match);
    // The cookie alone decides; open checks the footer.
    assert_eq!(probe(b"conectixabcdefgh", 4096), ProbeResult::Match);
    assert_eq!(probe(b"QFI\xfbconectix", 4096), ProbeResult::NoMatch);
    assert_eq!(probe(b"conect", 6), ProbeResult::NoMatch);
}

#[test]
fn detected_by_the_registry() {
    let registry = registry();
    let opened =
        aero_plugin_testkit::open_path(&registry, &fixtures().join("dynamic.vhd"), None, false)
            .unwrap();
    assert_eq!(opened.format.name(), "vhd");
    assert!(registry.get("vpc").is_some());
}
