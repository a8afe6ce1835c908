//! Damaged VHDs are refused with messages naming the file, and never cause a panic.

mod common;

use aero_plugin_api::{ByteSource, ErrorKind, MemorySource, Result, VirtualDisk};
use common::differencing::seal;
use common::*;
use std::sync::Arc;

fn open_bytes(name: &str, bytes: Vec<u8>) -> Result<Arc<dyn VirtualDisk>> {
    let source: Arc<dyn ByteSource> = Arc::new(MemorySource::new(name, bytes));
    aero_plugin_testkit::open_source(&registry(), source, Some("vhd"), false).map(|o| o.disk)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn refused(name: &str, bytes: Vec<u8>, needle: &str) {
    let err = open_bytes(name, bytes).err().expect("opening should fail");
    assert!(err.message().contains(name), "{err}");
    assert!(err.message().contains(needle), "{err}");
}

#[test]
fn bad_checksums_are_refused() {
    let image = fixture("dynamic.vhd");
    let len = image.len();

    let mut tail_flipped = image.clone();
    tail_flipped[len - 512 + 24] ^= 1;
    refused("tail.vhd", tail_flipped, "checksum");

    let mut head_flipped = image.clone();
    head_flipped[24] ^= 1;
    refused("head.vhd", head_flipped, "checksum");

    let mut header_flipped = image.clone();
    header_flipped[512 + 40] ^= 1;
    refused("header.vhd", header_flipped, "dynamic header: bad checksum");

    let mut fixed = fixture("fixed.vhd");
    let flen = fixed.len();
    fixed[flen - 512 + 70] ^= 0x80;
    refused("fixed.vhd", fixed, "checksum");
}

#[test]
fn differing_footer_copy_is_refused() {
    let mut image = fixture("dynamic.vhd");
    image[70] ^= 1;
    seal(&mut image[..512], 64);
    refused("copy.vhd", image, "differs");
}

#[test]
fn truncated_copies_are_refused() {
    for name in ["dynamic.vhd", "fixed.vhd", "dynamic-chs.vhd"] {
        let image = fixture(name);
        let len = image.len();
        for cut in [
            0,
            1,
            8,
            511,
            512,
            513,
            1024,
            1536,
            2048,
            4096,
            len / 2,
            len - 512,
            len - 1,
        ] {
            let err = open_bytes("cut.vhd", image[..cut].to_vec())
                .err()
                .unwrap_or_else(|| panic!("{name} cut to {cut} opened"));
            assert!(err.message().contains("cut.vhd"), "{err}");
        }
    }
}

#[test]
fn oversized_or_misplaced_tables_are_refused() {
    let image = fixture("dynamic.vhd");
    let mut huge = image.clone();
    huge[512 + 28..512 + 32].copy_from_slice(&u32::MAX.to_be_bytes());
    seal(&mut huge[512..1536], 36);
    let err = open_bytes("huge.vhd", huge).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    let mut past_end = image.clone();
    past_end[512 + 16..512 + 24].copy_from_slice(&(1u64 << 40).to_be_bytes());
    seal(&mut past_end[512..1536], 36);
    refused("past.vhd", past_end, "allocation table");

    let mut block_past_end = image.clone();
    block_past_end[1536..1540].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
    refused("block.vhd", block_past_end, "outside the data area");
}

/// Flips every metadata byte of a small qemu image (footers resealed so that the damage gets
/// past the checksums) and reads whatever opens.
#[test]
fn flipped_bytes_never_panic() {
    let dir = scratch("flips");
    let path = dir.join("small.vhd");
    let p = path.to_str().unwrap();
    run("qemu-img", &["create", "-q", "-f", "vpc", p, "1M"]);
    run(
        "qemu-io",
        &["-f", "vpc", "-c", "write -P 0x5a 4096 8192", p],
    );
    let image = std::fs::read(&path).unwrap();
    let len = image.len();
    let metadata: Vec<usize> = (0..2048).chain(len - 512..len).collect();
    for &at in &metadata {
        for reseal in [false, true] {
            let mut bytes = image.clone();
            bytes[at] ^= 0xff;
            if reseal {
                if at < 512 || at >= len - 512 {
                    let footer = if at < 512 { 0 } else { len - 512 };
                    seal(&mut bytes[footer..footer + 512], 64);
                    let copy = bytes[footer..footer + 512].to_vec();
                    bytes[..512].copy_from_slice(&copy);
                    bytes[len - 512..].copy_from_slice(&copy);
                } else if at < 1536 {
                    seal(&mut bytes[512..1536], 36);
                }
            }
            if let Ok(disk) = open_bytes("flip.vhd", bytes) {
                let cap = disk.capacity().min(64 * 1024 * 1024);
                let mut buf = vec![0u8; cap as usize];
                let _ = disk.read_at(0, &mut buf);
                let _ = disk.block_status(0, cap);
            }
        }
    }
}
