//! Images made with qemu-img/qemu-io read exactly like `qemu-img convert -O raw`, and block
//! status agrees with `qemu-img map`.

mod common;

use common::{assert_matches_qemu, create, open, qemu_io, read_all, require_qemu, run, scratch};
use std::path::Path;

/// Writes of several kinds at cluster-unaligned places of a 16 MiB disk.
const WRITES: &[&str] = &[
    "write -P 0x11 0 1536",
    "write -P 0x22 65000 70000",
    "write -z 1M 192k",
    "write -P 0x33 3M 2M",
    "write -P 0x44 8M 512",
    "discard 3584k 512k",
    "write -P 0x55 16380k 4k",
];

fn check(dir: &Path, name: &str, allow_backing: bool) {
    let disk = open(&dir.join(name), allow_backing).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_matches_qemu(dir, name, disk.as_ref());
}

fn make_and_check(test: &str, options: &str) {
    require_qemu();
    let dir = scratch(test);
    create(&dir, "t.qcow2", options, "16M");
    qemu_io(&dir, "t.qcow2", WRITES);
    check(&dir, "t.qcow2", false);
}

#[test]
fn cluster_size_512() {
    make_and_check("cluster_size_512", "cluster_size=512");
}

#[test]
fn cluster_size_2m() {
    make_and_check("cluster_size_2m", "cluster_size=2M");
}

#[test]
fn refcount_bits_1() {
    make_and_check("refcount_bits_1", "refcount_bits=1");
}

#[test]
fn version_2_small_clusters() {
    make_and_check("version_2_small_clusters", "compat=0.10,cluster_size=4k");
}

#[test]
fn extended_l2_with_small_subclusters() {
    make_and_check("extended_l2_small", "extended_l2=on,cluster_size=16k");
}

#[test]
fn dirty_image_is_readable() {
    require_qemu();
    let dir = scratch("dirty");
    create(&dir, "t.qcow2", "lazy_refcounts=on", "16M");
    qemu_io(&dir, "t.qcow2", WRITES);
    // Leave the dirty bit set as an interrupted writer with lazy refcounts would.
    let path = dir.join("t.qcow2");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[79] |= 1;
    std::fs::write(&path, bytes).unwrap();
    check(&dir, "t.qcow2", false);
}

#[test]
fn compressed_with_extended_l2_deflate_and_zstd() {
    require_qemu();
    let dir = scratch("compressed_extl2");
    for (name, compression) in [("d.qcow2", "zlib"), ("z.qcow2", "zstd")] {
        let options = format!("extended_l2=on,cluster_size=64k,compression_type={compression}");
        create(&dir, name, &options, "16M");
        qemu_io(
            &dir,
            name,
            &[
                "write -c -P 0x61 0 64k",
                "write -c -P 0x62 128k 128k",
                "write -P 0x63 160k 4k",
                "write -z 320k 8k",
                "write -P 0x64 1M 6k",
                "write -c -P 0x65 16320k 64k",
            ],
        );
        check(&dir, name, false);
    }
}

#[test]
fn compressed_image_from_convert_with_small_clusters() {
    require_qemu();
    let dir = scratch("compressed_convert");
    create(&dir, "src.qcow2", "", "16M");
    qemu_io(&dir, "src.qcow2", WRITES);
    for (name, options) in [
        ("c512.qcow2", "cluster_size=512"),
        ("c2m.qcow2", "cluster_size=2M,compression_type=zstd"),
    ] {
        run(
            &dir,
            "qemu-img",
            &[
                "convert",
                "-c",
                "-O",
                "qcow2",
                "-o",
                options,
                "src.qcow2",
                name,
            ],
        );
        check(&dir, name, false);
    }
}

#[test]
fn backing_chain_with_subclusters_and_a_smaller_base() {
    require_qemu();
    let dir = scratch("backing_chain");
    create(&dir, "base.qcow2", "cluster_size=4k", "8M");
    qemu_io(
        &dir,
        "base.qcow2",
        &["write -P 0x71 0 8M", "write -z 2M 1M"],
    );
    create(
        &dir,
        "mid.qcow2",
        "backing_file=base.qcow2,backing_fmt=qcow2,extended_l2=on",
        "12M",
    );
    qemu_io(
        &dir,
        "mid.qcow2",
        &[
            "write -P 0x72 4k 8k",
            "write -z 100k 4k",
            "write -P 0x73 9M 64k",
        ],
    );
    create(
        &dir,
        "top.qcow2",
        "backing_file=mid.qcow2,backing_fmt=qcow2,compat=0.10",
        "16M",
    );
    qemu_io(
        &dir,
        "top.qcow2",
        &["write -P 0x74 6k 1k", "write -P 0x75 15M 4k"],
    );
    check(&dir, "top.qcow2", true);
    let disk = open(&dir.join("top.qcow2"), true).unwrap();
    let chain = disk.info().backing_chain;
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(chain[0].ends_with("mid.qcow2") && chain[1].ends_with("base.qcow2"));
}

#[test]
fn concurrent_reads_agree_with_sequential_reads() {
    require_qemu();
    let dir = scratch("concurrent");
    create(&dir, "t.qcow2", "cluster_size=4k", "16M");
    qemu_io(&dir, "t.qcow2", WRITES);
    let disk = open(&dir.join("t.qcow2"), false).unwrap();
    let expected = read_all(disk.as_ref(), 1 << 20);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (disk, expected) = (&disk, &expected);
            scope.spawn(move || {
                let mut buf = vec![0u8; 12345];
                for i in 0..200u64 {
                    let offset = (i * 7919 * 4096 + t * 999) % (16 << 20);
                    let n = buf.len().min((16 << 20) - offset as usize);
                    disk.read_at(offset, &mut buf[..n]).unwrap();
                    assert!(buf[..n] == expected[offset as usize..offset as usize + n]);
                }
            });
        }
    });
}
