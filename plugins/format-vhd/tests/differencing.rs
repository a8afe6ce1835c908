//! Differencing VHDs read through their parent, only when backing files are allowed.

mod common;

use aero_plugin_api::{ErrorKind, ExtentKind};
use common::differencing::{utf16le, DiffImage};
use common::*;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// A dynamic 8 MiB parent written by qemu and its raw view.
fn parent(dir: &Path) -> (PathBuf, Vec<u8>) {
    let base = dir.join("base.vhd");
    let path = base.to_str().unwrap();
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "force_size=on",
            path,
            "8M",
        ],
    );
    run(
        "qemu-io",
        &[
            "-f",
            "vpc",
            "-c",
            "write -P 0x11 0 1M",
            "-c",
            "write -P 0x22 3M 512k",
            path,
        ],
    );
    let raw = qemu_raw(&base, "vpc");
    (base, raw)
}

fn writes() -> Vec<(u64, Vec<u8>)> {
    vec![
        (MIB, vec![0x33; 64 * 1024]),
        (3 * MIB + 4096, vec![0x44; 1024]),
        (7 * MIB + 512, vec![0x55; 512]),
    ]
}

fn diff_image(locators: Vec<(&[u8; 4], Vec<u8>)>, parent_name: &str) -> Vec<u8> {
    DiffImage {
        capacity: 8 * MIB,
        block_size: 512 * 1024,
        locators,
        parent_name,
        writes: writes(),
    }
    .build()
}

fn oracle(parent_raw: &[u8]) -> Vec<u8> {
    let mut view = parent_raw.to_vec();
    for (offset, data) in writes() {
        view[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
    }
    view
}

fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn reads_through_the_parent() {
    let dir = scratch("diff-reads");
    let (base, parent_raw) = parent(&dir);
    let diff = dir.join("diff.vhd");
    std::fs::write(
        &diff,
        diff_image(vec![(b"W2ru", utf16le(".\\base.vhd"))], "base.vhd"),
    )
    .unwrap();
    let view = oracle(&parent_raw);

    let disk = open(&diff, true).unwrap().disk;
    assert_eq!(disk.capacity(), 8 * MIB);
    assert_eq!(disk_sha256(disk.as_ref()), sha(&view));
    for (offset, len) in [
        (MIB - 100, 300usize),
        (MIB + 64 * 1024 - 1, 2),
        (3 * MIB + 4000, 1200),
    ] {
        let mut buf = vec![0u8; len];
        disk.read_at(offset, &mut buf).unwrap();
        assert_eq!(buf, view[offset as usize..offset as usize + len]);
    }
    let info = disk.info();
    assert_eq!(info.cluster_size, Some(512 * 1024));
    assert_eq!(info.backing_chain, vec![base.display().to_string()]);

    // Written sectors are data; everything else has the parent's status.
    let parent_map = qemu_map(&base, "vpc");
    let kind_in_parent = |at: u64| {
        parent_map
            .iter()
            .find(|(s, l, _)| (*s..s + l).contains(&at))
            .unwrap()
            .2
    };
    let expected = merge((0..8 * MIB / 512).map(|sector| {
        let at = sector * 512;
        let written = writes()
            .iter()
            .any(|(o, d)| (*o..o + d.len() as u64).contains(&at));
        let kind = if written {
            ExtentKind::Data
        } else {
            kind_in_parent(at)
        };
        (at, 512, kind)
    }));
    assert_eq!(status(disk.as_ref()), expected);
}

#[test]
fn refused_unless_backing_is_allowed() {
    let dir = scratch("diff-refused");
    parent(&dir);
    let diff = dir.join("diff.vhd");
    std::fs::write(
        &diff,
        diff_image(vec![(b"W2ru", utf16le(".\\base.vhd"))], "base.vhd"),
    )
    .unwrap();
    let err = open(&diff, false).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::BackingNotAllowed, "{err}");
    assert!(err.message().contains("diff.vhd"), "{err}");
}

#[test]
fn parent_outside_the_allowed_directories_is_refused() {
    let dir = scratch("diff-outside");
    std::fs::create_dir_all(dir.join("parent")).unwrap();
    std::fs::create_dir_all(dir.join("child")).unwrap();
    parent(&dir.join("parent"));
    let diff = dir.join("child/diff.vhd");
    std::fs::write(
        &diff,
        diff_image(vec![(b"W2ru", utf16le("..\\parent\\base.vhd"))], "base.vhd"),
    )
    .unwrap();
    let err = open(&diff, true).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::BackingNotAllowed, "{err}");
}

#[test]
fn falls_back_to_other_locators_and_the_parent_name() {
    let dir = scratch("diff-locators");
    let (base, parent_raw) = parent(&dir);
    let view_sha = sha(&oracle(&parent_raw));
    let url = format!("file://localhost{}", base.display());
    for (file, locators, name) in [
        ("mac.vhd", vec![(b"Mac ", url.into_bytes())], ""),
        (
            "name.vhd",
            vec![(b"W2ru", utf16le(".\\missing.vhd"))],
            "base.vhd",
        ),
        (
            "abs.vhd",
            vec![(b"W2ku", utf16le(&base.display().to_string()))],
            "",
        ),
    ] {
        let diff = dir.join(file);
        std::fs::write(&diff, diff_image(locators, name)).unwrap();
        let disk = open(&diff, true).unwrap().disk;
        assert_eq!(disk_sha256(disk.as_ref()), view_sha, "{file}");
    }
}

#[test]
fn missing_parent_is_reported() {
    let dir = scratch("diff-missing");
    let diff = dir.join("diff.vhd");
    std::fs::write(
        &diff,
        diff_image(vec![(b"W2ru", utf16le(".\\gone.vhd"))], "gone2.vhd"),
    )
    .unwrap();
    let err = open(&diff, true).err().unwrap();
    assert!(
        err.message().contains("gone.vhd") && err.message().contains("gone2.vhd"),
        "{err}"
    );
    std::fs::write(&diff, diff_image(vec![], "")).unwrap();
    let err = open(&diff, true).err().unwrap();
    assert!(err.message().contains("names no parent"), "{err}");
}
