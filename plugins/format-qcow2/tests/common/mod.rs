//! Helpers shared by the integration tests: opening images through the registry, hashing the
//! guest-visible bytes and asking qemu-img for the expected bytes and allocation map.

#![allow(dead_code)]

use aero_plugin_api::{ExtentKind, Registry, Result, VirtualDisk};
use format_qcow2::Qcow2Format;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A registry holding only the qcow2 plugin.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.add(Arc::new(Qcow2Format)).unwrap();
    registry
}

/// Opens `path` as qcow2 (detected by probing).
pub fn open(path: &Path, allow_backing: bool) -> Result<Arc<dyn VirtualDisk>> {
    aero_plugin_testkit::open_path(&registry(), path, None, allow_backing).map(|o| o.disk)
}

/// All guest-visible bytes of `disk`, read in pieces of `piece` bytes.
pub fn read_all(disk: &dyn VirtualDisk, piece: usize) -> Vec<u8> {
    let mut out = vec![0u8; disk.capacity() as usize];
    for (i, chunk) in out.chunks_mut(piece).enumerate() {
        disk.read_at((i * piece) as u64, chunk).unwrap();
    }
    out
}

/// Hex sha256 of the guest-visible bytes of `disk`.
pub fn sha256_of(disk: &dyn VirtualDisk) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0;
    while pos < disk.capacity() {
        let n = (disk.capacity() - pos).min(buf.len() as u64) as usize;
        disk.read_at(pos, &mut buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// The shared fixture set (`AERO_FIXTURES`, else made by make-fixtures.sh under target/).
pub fn fixtures_dir() -> PathBuf {
    aero_plugin_testkit::Fixtures::builtin().dir().to_path_buf()
}

/// Fails the test with an install hint when qemu-img or qemu-io cannot be run.
pub fn require_qemu() {
    for tool in ["qemu-img", "qemu-io"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is needed by these tests: install it (Debian/Ubuntu: apt-get install qemu-utils)"
        );
    }
}

/// An empty scratch directory under target/ for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/qcow2-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `tool` with `args` in `dir`, panicking with its stderr on failure.
pub fn run(dir: &Path, tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `qemu-img create -f qcow2 -o <options> <name> <size>` in `dir`.
pub fn create(dir: &Path, name: &str, options: &str, size: &str) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !options.is_empty() {
        args.extend(["-o", options]);
    }
    args.extend([name, size]);
    run(dir, "qemu-img", &args);
}

/// Runs qemu-io commands (`write -P 0xab 0 4k`, ...) on the qcow2 image `name` in `dir`.
pub fn qemu_io(dir: &Path, name: &str, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(name);
    run(dir, "qemu-io", &args);
}

/// The bytes `qemu-img convert -O raw` produces for `name` in `dir`.
pub fn qemu_raw(dir: &Path, name: &str) -> Vec<u8> {
    let out = format!("{name}.raw");
    run(
        dir,
        "qemu-img",
        &["convert", "-f", "qcow2", "-O", "raw", name, &out],
    );
    let bytes = std::fs::read(dir.join(&out)).unwrap();
    std::fs::remove_file(dir.join(&out)).unwrap();
    bytes
}

/// Checks that `disk` reads exactly like qemu and that its block status agrees with
/// `qemu-img map`: data that qemu may report non-zero is Data, and qemu's unallocated or
/// zero ranges that hold no data are Zero.
pub fn assert_matches_qemu(dir: &Path, name: &str, disk: &dyn VirtualDisk) {
    let expected = qemu_raw(dir, name);
    assert_eq!(disk.capacity(), expected.len() as u64, "{name}: capacity");
    for piece in [4096, 65536 + 512, 3 << 20] {
        assert!(
            read_all(disk, piece) == expected,
            "{name}: bytes differ (piece {piece})"
        );
    }
    assert_block_status_matches_qemu(dir, name, disk);
}

/// Checks block status against `qemu-img map --output=json` over the whole disk and for a
/// sub-range starting inside the disk.
pub fn assert_block_status_matches_qemu(dir: &Path, name: &str, disk: &dyn VirtualDisk) {
    let map: serde_json::Value = serde_json::from_slice(&run(
        dir,
        "qemu-img",
        &["map", "--output=json", "-f", "qcow2", name],
    ))
    .unwrap();
    let extents = disk.block_status(0, disk.capacity()).unwrap();
    let mut pos = 0;
    for (a, b) in extents.iter().zip(extents.iter().skip(1)) {
        assert!(a.kind != b.kind, "{name}: unmerged extents {a:?} {b:?}");
    }
    for e in &extents {
        assert_eq!(e.offset, pos, "{name}: extents must be contiguous");
        assert!(e.length > 0);
        pos = e.end();
    }
    assert_eq!(pos, disk.capacity());
    let kind_at = |offset: u64| {
        extents
            .iter()
            .find(|e| e.offset <= offset && offset < e.end())
            .unwrap()
            .kind
    };
    for range in map.as_array().unwrap() {
        let start = range["start"].as_u64().unwrap();
        let length = range["length"].as_u64().unwrap();
        let data = range["data"].as_bool().unwrap();
        let zero = range["zero"].as_bool().unwrap();
        // Every extent boundary inside the range must keep the expected kind.
        let mut offsets = vec![start];
        offsets.extend(
            extents
                .iter()
                .map(|e| e.offset)
                .filter(|&o| o > start && o < start + length),
        );
        for o in offsets {
            let ours = kind_at(o);
            if !zero {
                assert_eq!(
                    ours,
                    ExtentKind::Data,
                    "{name}: at {o} qemu says data: {range}"
                );
            } else if !data {
                assert_eq!(
                    ours,
                    ExtentKind::Zero,
                    "{name}: at {o} qemu says zero: {range}"
                );
            }
        }
    }
    // A sub-range must report the same kinds, clipped.
    let (off, len) = (disk.capacity() / 3 + 123, disk.capacity() / 3);
    let sub = disk.block_status(off, len).unwrap();
    assert_eq!(sub.first().unwrap().offset, off);
    assert_eq!(sub.last().unwrap().end(), off + len);
    for e in sub {
        assert_eq!(kind_at(e.offset), e.kind);
        assert_eq!(kind_at(e.end() - 1), e.kind);
    }
}
