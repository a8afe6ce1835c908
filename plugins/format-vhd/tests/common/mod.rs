//! Helpers shared by the VHD integration tests: fixtures, oracles and qemu.

#![allow(dead_code)]

pub mod differencing;

use aero_plugin_api::{ExtentKind, Registry, Result, VirtualDisk};
use format_vhd::VhdFormat;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The shared fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures")
}

/// A fresh scratch directory under the workspace's target directory.
pub fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/format-vhd-tests")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// A registry holding only the VHD plugin.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.add(Arc::new(VhdFormat)).unwrap();
    registry
}

/// Opens `path` as VHD.
pub fn open(path: &Path, allow_backing: bool) -> Result<aero_plugin_testkit::Opened> {
    aero_plugin_testkit::open_path(&registry(), path, Some("vhd"), allow_backing)
}

/// The (virtual size, sha256) that `expected.tsv` lists for a fixture.
pub fn expected(name: &str) -> (u64, String) {
    let tsv = std::fs::read_to_string(fixtures().join("expected.tsv")).unwrap();
    let line = tsv
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in expected.tsv"));
    let cols: Vec<&str> = line.split('\t').collect();
    (cols[2].parse().unwrap(), cols[3].to_string())
}

/// sha256 of every guest byte, read in 1 MiB pieces.
pub fn disk_sha256(disk: &dyn VirtualDisk) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < disk.capacity() {
        let n = (disk.capacity() - offset).min(buf.len() as u64) as usize;
        disk.read_at(offset, &mut buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// Runs a command and panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The raw view of an image according to qemu.
pub fn qemu_raw(image: &Path, format: &str) -> Vec<u8> {
    let out = image.with_extension("qemu-raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            format,
            "-O",
            "raw",
            image.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

/// `qemu-img map` of an image as (start, length, zero) runs with adjacent equal runs merged.
pub fn qemu_map(image: &Path, format: &str) -> Vec<(u64, u64, ExtentKind)> {
    let json = run(
        "qemu-img",
        &[
            "map",
            "--output=json",
            "-f",
            format,
            image.to_str().unwrap(),
        ],
    );
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    merge(entries.iter().map(|e| {
        let kind = if e["data"].as_bool().unwrap() {
            ExtentKind::Data
        } else {
            ExtentKind::Zero
        };
        (
            e["start"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            kind,
        )
    }))
}

/// Adjacent runs of the same kind merged into one.
pub fn merge(
    runs: impl IntoIterator<Item = (u64, u64, ExtentKind)>,
) -> Vec<(u64, u64, ExtentKind)> {
    let mut out: Vec<(u64, u64, ExtentKind)> = Vec::new();
    for (start, length, kind) in runs {
        match out.last_mut() {
            Some(last) if last.2 == kind && last.0 + last.1 == start => last.1 += length,
            _ => out.push((start, length, kind)),
        }
    }
    out
}

/// The block status of the whole disk as merged runs.
pub fn status(disk: &dyn VirtualDisk) -> Vec<(u64, u64, ExtentKind)> {
    let extents = disk.block_status(0, disk.capacity()).unwrap();
    merge(extents.iter().map(|e| (e.offset, e.length, e.kind)))
}
