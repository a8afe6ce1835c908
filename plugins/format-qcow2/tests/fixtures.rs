//! The shared fixtures (target/fixtures, made by make-fixtures.sh) read exactly like
//! `qemu-img convert -O raw`.

mod common;

use aero_plugin_api::ErrorKind;
use common::{fixtures_dir, open, sha256_of};

#[test]
fn every_qcow2_fixture_matches_qemu() {
    let dir = fixtures_dir();
    let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, format, size, sha) = (cols[0], cols[1], cols[2], cols[3]);
        if format != "qcow2" || sha == "-" {
            continue;
        }
        let disk = open(&dir.join(name), true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(disk.capacity().to_string(), size, "{name}: capacity");
        assert_eq!(
            sha256_of(disk.as_ref()),
            sha,
            "{name}: guest-visible sha256"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} qcow2 fixtures listed");
}

#[test]
fn overlay_needs_permission_and_reports_its_chain() {
    let dir = fixtures_dir();
    let err = open(&dir.join("overlay.qcow2"), false).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::BackingNotAllowed, "{err}");
    assert!(err.message().contains("base.qcow2"), "{err}");

    let disk = open(&dir.join("overlay.qcow2"), true).unwrap();
    let info = disk.info();
    assert_eq!(info.cluster_size, Some(65536));
    assert_eq!(info.backing_chain.len(), 1);
    assert!(info.backing_chain[0].ends_with("base.qcow2"));
}

#[test]
fn truncated_fixture_is_refused_with_a_clear_error() {
    let dir = fixtures_dir();
    let err = open(&dir.join("truncated.qcow2"), false).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("truncated.qcow2"), "{err}");
    assert!(err.message().contains("past the end of the file"), "{err}");
}

#[test]
fn fixture_cluster_sizes() {
    let dir = fixtures_dir();
    for (name, size) in [("v3-4k.qcow2", 4096), ("v3-extl2.qcow2", 131072)] {
        let disk = open(&dir.join(name), false).unwrap();
        assert_eq!(disk.info().cluster_size, Some(size));
        assert!(disk.info().backing_chain.is_empty());
    }
}
