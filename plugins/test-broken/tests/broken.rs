//! Broken plugin libraries are refused or reported as errors; the host never crashes.

use aero_plugin_api::{ErrorKind, Registry};
use aero_plugin_testkit::{self as conformance, build_plugin_library, load_library, Fixtures};
use std::path::PathBuf;
use std::sync::Arc;

fn library(package: &str) -> PathBuf {
    build_plugin_library(env!("CARGO_MANIFEST_DIR"), package).unwrap()
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("test-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_wrong_abi_version_is_refused_naming_both_versions_and_the_path() {
    let path = library("test-plugin-bad-abi");
    let error = load_library(&path).err().unwrap();
    let message = error.message();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("ABI version 99"), "{message}");
    assert!(message.contains("ABI version 1"), "{message}");
}

#[test]
fn panics_become_errors() {
    let mut registry = Registry::new();
    registry
        .add(load_library(&library("test-plugin-panics")).unwrap())
        .unwrap();
    let error = aero_plugin_testkit::open_path(&registry, &scratch("empty.img", b""), None, false)
        .err()
        .unwrap();
    assert!(
        error
            .message()
            .contains("panicked in open: open cannot cope with an empty file"),
        "{error}"
    );
    let disk =
        aero_plugin_testkit::open_path(&registry, &scratch("four.img", b"abcd"), None, false)
            .unwrap()
            .disk;
    let mut buf = [0u8; 2];
    let error = disk.read_at(0, &mut buf).unwrap_err();
    assert!(
        error
            .message()
            .contains("panicked in read_at: read_at cannot cope with offset 0"),
        "{error}"
    );
    assert!(error.message().contains("libtest_plugin_panics"), "{error}");
    disk.read_at(2, &mut buf).unwrap();
    assert_eq!(&buf, b"cd");
}

#[test]
fn wrong_bytes_fail_the_conformance_suite() {
    let format = load_library(&library("test-plugin-wrong-bytes")).unwrap();
    let outcomes = conformance::run(Arc::clone(&format), &Fixtures::builtin());
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    assert!(!failed.is_empty());
    assert!(
        failed.iter().any(|o| o.name == "src.raw: full read"),
        "{failed:#?}"
    );
}
