//! The VMDK plugin loaded the only way aero-host loads it: as a shared library, by path.

use aero_plugin_api::{Capabilities, ErrorKind, ExtentKind, Registry, Result};
use aero_plugin_testkit::{
    self as conformance, build_plugin_library, load_plugin, Fixtures, LoadedPlugin,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn plugin() -> &'static LoadedPlugin {
    static PLUGIN: OnceLock<LoadedPlugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let path = build_plugin_library(env!("CARGO_MANIFEST_DIR"), "format-vmdk").unwrap();
        load_plugin(&path).unwrap()
    })
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(Fixtures::builtin)
}

fn open(path: &Path) -> Result<aero_plugin_testkit::Opened> {
    let mut registry = Registry::new();
    registry.add(Arc::clone(&plugin().format))?;
    aero_plugin_testkit::open_path(&registry, path, None, false)
}

fn sha256_of(disk: &aero_plugin_testkit::Opened) -> String {
    let capacity = disk.disk.capacity();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < capacity {
        let len = (capacity - offset).min(buf.len() as u64) as usize;
        disk.disk.read_at(offset, &mut buf[..len]).unwrap();
        hasher.update(&buf[..len]);
        offset += len as u64;
    }
    hex::encode(hasher.finalize())
}

fn expected_sha256(name: &str) -> String {
    let fixture = fixtures()
        .entries()
        .iter()
        .find(|f| f.name == name)
        .unwrap();
    fixture.sha256.clone().unwrap()
}

/// A scratch copy of fixture `name`, changed by `edit`.
fn edited(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("format-vmdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(fixtures().dir().join(name)).unwrap();
    edit(&mut bytes);
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{n}-{name}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn loads_with_its_description() {
    let plugin = plugin();
    assert_eq!(plugin.format.name(), "vmdk");
    assert_eq!(plugin.format.version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin.abi_version, 1);
    assert!(plugin
        .format
        .capabilities()
        .contains(Capabilities::ZERO_EXTENTS));
    assert!(plugin
        .format
        .capabilities()
        .contains(Capabilities::BACKING_FILES));
    assert!(plugin.path.ends_with("libformat_vmdk.so"));
}

#[test]
fn fixtures_read_exactly_as_qemu_converts_them() {
    for name in ["sparse.vmdk", "stream.vmdk"] {
        let disk = open(&fixtures().dir().join(name)).unwrap();
        assert_eq!(disk.format.name(), "vmdk", "{name} is detected by probing");
        assert_eq!(disk.disk.capacity(), 64 << 20);
        assert_eq!(disk.disk.info().cluster_size, Some(65536));
        assert_eq!(sha256_of(&disk), expected_sha256(name), "{name}");
    }
}

#[test]
fn zero_extents_read_as_zeros_and_data_matches_the_source() {
    let raw = std::fs::read(fixtures().dir().join("src.raw")).unwrap();
    for name in ["sparse.vmdk", "stream.vmdk"] {
        let disk = open(&fixtures().dir().join(name)).unwrap().disk;
        let extents = disk.block_status(0, disk.capacity()).unwrap();
        assert!(extents.iter().any(|e| e.kind == ExtentKind::Zero), "{name}");
        for extent in extents.iter().filter(|e| e.kind == ExtentKind::Zero) {
            let range = extent.offset as usize..extent.end() as usize;
            assert!(raw[range].iter().all(|b| *b == 0), "{name}: {extent:?}");
        }
        // An unaligned read across a grain boundary.
        let mut buf = vec![0u8; 70_000];
        disk.read_at(65_000, &mut buf).unwrap();
        assert_eq!(buf, raw[65_000..135_000], "{name}");
    }
}

#[test]
fn grain_directory_at_the_end_is_found_in_the_footer() {
    let path = edited("stream.vmdk", |bytes| {
        let mut footer_header = bytes[..512].to_vec();
        put_u64(bytes, 56, u64::MAX);
        let mut footer = vec![0u8; 512];
        put_u32(&mut footer, 12, 3);
        footer.append(&mut footer_header);
        footer.extend_from_slice(&[0u8; 512]);
        bytes.extend_from_slice(&footer);
    });
    let disk = open(&path).unwrap();
    assert_eq!(sha256_of(&disk), expected_sha256("stream.vmdk"));
}

#[test]
fn redundant_grain_directory_stands_in_for_a_broken_one() {
    let path = edited("sparse.vmdk", |bytes| {
        let gd = u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize * 512;
        put_u32(bytes, gd, u32::MAX);
    });
    let disk = open(&path).unwrap();
    assert_eq!(sha256_of(&disk), expected_sha256("sparse.vmdk"));
}

#[test]
fn damaged_images_are_errors_naming_the_file() {
    let gd_at = |bytes: &[u8]| u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize * 512;
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "grain size",
            edited("sparse.vmdk", |b| put_u64(b, 20, 1 << 40)),
        ),
        ("version", edited("sparse.vmdk", |b| put_u32(b, 4, 9))),
        (
            "grain directory",
            edited("sparse.vmdk", |b| put_u64(b, 56, 1 << 30)),
        ),
        ("truncated", edited("sparse.vmdk", |b| b.truncate(100_000))),
        (
            "compressed grain",
            edited("stream.vmdk", |b| {
                let table = u32_at(b, gd_at(b)) as usize * 512;
                let first = (0..512)
                    .map(|i| u32_at(b, table + 4 * i))
                    .find(|e| *e > 1)
                    .unwrap();
                let data = first as usize * 512 + 14;
                b[data..data + 40].fill(0x5a);
            }),
        ),
        (
            "grain marker",
            edited("stream.vmdk", |b| {
                let table = u32_at(b, gd_at(b)) as usize * 512;
                let first = (0..512)
                    .map(|i| u32_at(b, table + 4 * i))
                    .find(|e| *e > 1)
                    .unwrap();
                put_u32(b, first as usize * 512 + 8, u32::MAX);
            }),
        ),
    ];
    for (what, path) in cases {
        let result = open(&path).and_then(|disk| {
            let mut buf = vec![0u8; 1 << 20];
            (0..disk.disk.capacity())
                .step_by(buf.len())
                .try_for_each(|offset| disk.disk.read_at(offset, &mut buf))
        });
        let error = result.expect_err(what);
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(error.message().contains(file), "{what}: {error}");
    }
}

#[test]
fn a_delta_disk_is_refused_across_the_library_boundary() {
    let path = edited("sparse.vmdk", |bytes| {
        let at = u64::from_le_bytes(bytes[28..36].try_into().unwrap()) as usize * 512;
        let text = b"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\n\
                     createType=\"monolithicSparse\"\nparentFileNameHint=\"base.vmdk\"\n";
        bytes[at..at + 1024].fill(0);
        bytes[at..at + text.len()].copy_from_slice(text);
    });
    let error = open(&path).err().unwrap();
    assert_eq!(error.kind(), ErrorKind::BackingNotAllowed);
    assert!(
        error.message().contains("backing file 'base.vmdk'"),
        "{error}"
    );
}

#[test]
fn concurrent_reads_agree() {
    let disk = Arc::new(open(&fixtures().dir().join("stream.vmdk")).unwrap());
    let expected = std::fs::read(fixtures().dir().join("src.raw")).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (disk, expected) = (&disk, &expected);
            scope.spawn(move || {
                let mut buf = vec![0u8; 300_000];
                for i in 0..20u64 {
                    let offset = (t * 7_777_777 + i * 1_234_567) % (disk.disk.capacity() - 300_000);
                    disk.disk.read_at(offset, &mut buf).unwrap();
                    assert_eq!(buf, expected[offset as usize..offset as usize + buf.len()]);
                }
            });
        }
    });
}

#[test]
fn passes_the_conformance_suite_as_a_library() {
    let outcomes = conformance::run(Arc::clone(&plugin().format), fixtures());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.to_string())
        .collect();
    assert!(!outcomes.is_empty());
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}
