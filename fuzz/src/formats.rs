//! The format-plugin targets: an image held in memory, probed, opened and exercised against
//! the `VirtualDisk` contract.

use aero_plugin_api::{
    Backing, BackingResolver, ByteSource, DiskFormat, Error, ErrorKind, Extent, ExtentKind,
    MemorySource, OpenContext, ProbeInput, Result, VirtualDisk,
};
use aero_plugin_testkit::{check_cover, CountingAllocator};
use std::sync::Arc;

/// Most bytes a plugin may hold at once while one input is opened and exercised.
pub const ALLOCATION_BOUND: u64 = 256 << 20;
/// Bytes read at the start, the middle and the end of a disk, and per zero extent checked.
const READ_LEN: u64 = 64 << 10;
/// Length of one block-status query of the walk over the disk.
const STATUS_STEP: u64 = 64 << 20;
/// How much of the disk the block-status walk covers at its start and at its end.
const STATUS_SPAN: u64 = 1 << 30;
/// The walk stops once the plugin has returned this many extents.
const MAX_EXTENTS: usize = 1 << 16;
/// Extents of each kind read back per input.
const EXTENTS_READ: usize = 16;

/// The built-in or linked format plugin called `name`.
pub fn format(name: &str) -> Arc<dyn DiskFormat> {
    match name {
        "raw" => Arc::new(format_raw::RawFormat),
        "qcow2" => Arc::new(format_qcow2::Qcow2Format),
        "vhd" => Arc::new(format_vhd::VhdFormat),
        "aerosparse" => Arc::new(format_aerosparse::AeroSparseFormat),
        "vmdk" => Arc::new(format_vmdk::VmdkFormat),
        _ => panic!("no format plugin called {name}"),
    }
}

/// `data` with the checksums of its VHD footers (at the end and at offset 0) and of the
/// dynamic header the footer points to recomputed. Mutations rarely keep a checksum right, so
/// without this the vhd target would seldom get past them.
pub fn with_vhd_checksums(data: &[u8]) -> Vec<u8> {
    const FOOTER: usize = 512;
    const HEADER: usize = 1024;
    fn fix(bytes: &mut [u8], cookie: &[u8], at: usize) {
        if !bytes.starts_with(cookie) {
            return;
        }
        bytes[at..at + 4].fill(0);
        let sum = bytes
            .iter()
            .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
        bytes[at..at + 4].copy_from_slice(&(!sum).to_be_bytes());
    }
    let mut data = data.to_vec();
    let len = data.len();
    if len < FOOTER {
        return data;
    }
    fix(&mut data[len - FOOTER..], b"conectix", 64);
    fix(&mut data[..FOOTER], b"conectix", 64);
    let footer = &data[len - FOOTER..];
    let header = u64::from_be_bytes(footer[16..24].try_into().expect("8 bytes"));
    if let Some(at) = usize::try_from(header)
        .ok()
        .filter(|&at| at <= len.saturating_sub(HEADER))
    {
        fix(&mut data[at..at + HEADER], b"cxsparse", 36);
    }
    data
}

/// Refuses every backing file: a fuzzed image must not reach the file system.
struct NoBacking;

impl BackingResolver for NoBacking {
    fn open_backing(&self, reference: &str, _format: Option<&str>) -> Result<Backing> {
        Err(Error::new(
            ErrorKind::BackingNotAllowed,
            format!("backing file {reference}: not allowed while fuzzing"),
        ))
    }
}

/// Probes `data` with the format plugin `name`, opens it (backing files refused) and, when it
/// opens, checks the disk against the `VirtualDisk` contract: a sane capacity; block status over
/// the disk in bounded steps that covers each asked range exactly with ascending, non-empty
/// extents; zero extents that read as zeros; reads at the start, middle and end and of data
/// extents that return (an error is fine); reads and queries past the end that are errors.
/// The plugin must hold at most [`ALLOCATION_BOUND`] bytes at once.
pub fn check_format(name: &str, data: &[u8]) {
    let format = format(name);
    let source: Arc<dyn ByteSource> = Arc::new(MemorySource::new(
        format!("fuzz-input.{name}"),
        data.to_vec(),
    ));
    let base = CountingAllocator::mark();
    ProbeInput::read(source.as_ref(), |input| format.probe(&input))
        .expect("probe input read from memory");
    let ctx = OpenContext::new(&NoBacking);
    if let Ok(disk) = format.open(source, &ctx) {
        check_disk(disk.as_ref());
    }
    let peak = CountingAllocator::peak_since(base);
    assert!(
        peak <= ALLOCATION_BOUND,
        "{name}: held {} MiB at once (bound {} MiB)",
        peak >> 20,
        ALLOCATION_BOUND >> 20
    );
}

fn check_disk(disk: &dyn VirtualDisk) {
    let cap = disk.capacity();
    assert!(cap <= i64::MAX as u64, "capacity {cap} exceeds i64::MAX");
    assert_eq!(disk.capacity(), cap, "capacity changed between calls");
    let _ = disk.info();
    check_past_end(disk, cap);
    check_reads(disk, cap);
    let sample = check_block_status(disk, cap);
    check_extent_reads(disk, &sample);
}

/// Reads and block-status queries that reach past the end must be errors.
fn check_past_end(disk: &dyn VirtualDisk, cap: u64) {
    let mut reads = vec![(cap, 1), (u64::MAX, 1), (u64::MAX - 511, 512)];
    let mut queries = vec![(cap, 1), (u64::MAX, 1)];
    if cap > 0 {
        reads.push((cap - 1, 2));
        queries.extend([(cap - 1, 2), (0, cap + 1)]);
    }
    for (offset, len) in reads {
        let mut buf = vec![0u8; len];
        assert!(
            disk.read_at(offset, &mut buf).is_err(),
            "read of {len} bytes at {offset} succeeded on a disk of {cap} bytes"
        );
    }
    for (offset, len) in queries {
        assert!(
            disk.block_status(offset, len).is_err(),
            "block_status({offset}, {len}) succeeded on a disk of {cap} bytes"
        );
    }
}

/// Reads at the start, middle and end may fail but never panic; empty reads inside the disk
/// succeed, and a read split in two returns the same bytes as the whole.
fn check_reads(disk: &dyn VirtualDisk, cap: u64) {
    if cap == 0 {
        return;
    }
    for offset in [0, cap / 2, cap - 1] {
        assert!(
            disk.read_at(offset, &mut []).is_ok(),
            "empty read at {offset} failed on a disk of {cap} bytes"
        );
    }
    let tail = cap.min(READ_LEN);
    for (offset, len) in [
        (0, tail),
        (cap / 2, (cap - cap / 2).min(READ_LEN)),
        (cap - tail, tail),
    ] {
        let mut whole = vec![0u8; len as usize];
        if disk.read_at(offset, &mut whole).is_err() {
            continue;
        }
        // An odd split point crosses sector and cluster boundaries unaligned.
        let split = (len / 2) | 1;
        let mut parts = vec![0u8; len as usize];
        let (first, second) = parts.split_at_mut(split.min(len) as usize);
        if disk.read_at(offset, first).is_ok()
            && disk.read_at(offset + first.len() as u64, second).is_ok()
        {
            assert!(
                whole == parts,
                "read of {len} bytes at {offset} differs from the same range read in two parts"
            );
        }
    }
}

/// The ranges the block-status walk asks for: steps over the whole disk, or over its first and
/// last [`STATUS_SPAN`] bytes when it is larger, then two small unaligned ranges.
fn status_ranges(cap: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut steps = |start: u64, end: u64| {
        let mut at = start;
        while at < end {
            let len = (end - at).min(STATUS_STEP);
            ranges.push((at, len));
            at += len;
        }
    };
    if cap <= 2 * STATUS_SPAN {
        steps(0, cap);
    } else {
        steps(0, STATUS_SPAN);
        steps(cap - STATUS_SPAN, cap);
    }
    if cap > 2 {
        ranges.push((1, (cap - 2).min(4097)));
        let third = (cap / 3) | 1;
        ranges.push((third, (cap - third).min(777)));
    }
    ranges
}

/// Walks block status over the disk (bounded) and checks each answer covers its range
/// exactly; returns up to [`EXTENTS_READ`] extents of each kind to read back.
fn check_block_status(disk: &dyn VirtualDisk, cap: u64) -> Vec<Extent> {
    let mut seen = 0;
    let (mut data, mut zeros) = (Vec::new(), Vec::new());
    for (offset, len) in status_ranges(cap) {
        let Ok(extents) = disk.block_status(offset, len) else {
            continue;
        };
        if let Err(problem) = check_cover(&extents, offset, offset + len) {
            panic!("block_status({offset}, {len}): {problem}");
        }
        for &e in &extents {
            let kept = match e.kind {
                ExtentKind::Data => &mut data,
                ExtentKind::Zero => &mut zeros,
            };
            if kept.len() < EXTENTS_READ {
                kept.push(e);
            }
        }
        seen += extents.len();
        if seen >= MAX_EXTENTS {
            break;
        }
    }
    data.extend(zeros);
    data
}

/// Reads the first and last [`READ_LEN`] bytes of each extent: data may fail to read (a
/// damaged cluster), zero extents must read as zeros.
fn check_extent_reads(disk: &dyn VirtualDisk, extents: &[Extent]) {
    for e in extents {
        let len = e.length.min(READ_LEN);
        let mut buf = vec![0u8; len as usize];
        for offset in [e.offset, e.end() - len] {
            if e.kind == ExtentKind::Data {
                let _ = disk.read_at(offset, &mut buf);
                continue;
            }
            if let Err(err) = disk.read_at(offset, &mut buf) {
                panic!("zero extent {e:?}: read of {len} bytes at {offset} failed: {err}");
            }
            assert!(
                buf.iter().all(|&b| b == 0),
                "zero extent {e:?} reads non-zero bytes at {offset}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(offset: u64, length: u64) -> Extent {
        Extent::new(offset, length, ExtentKind::Data)
    }

    #[test]
    fn cover_refuses_gaps_overlaps_empty_and_short_answers() {
        assert!(check_cover(&[extent(0, 4), extent(4, 6)], 0, 10).is_ok());
        assert!(check_cover(&[extent(0, 4), extent(5, 5)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 5), extent(4, 6)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 0), extent(0, 10)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 4)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 11)], 0, 10).is_err());
        assert!(check_cover(&[extent(1, u64::MAX)], 1, 10).is_err());
    }

    #[test]
    fn status_walk_is_bounded_and_reaches_both_ends() {
        let cap = u64::MAX >> 1;
        let ranges = status_ranges(cap);
        assert!(ranges.len() <= 2 * (STATUS_SPAN / STATUS_STEP) as usize + 2);
        assert_eq!(ranges[0].0, 0);
        assert!(ranges.iter().any(|&(o, l)| o + l == cap));
        assert_eq!(status_ranges(0), Vec::new());
    }

    #[test]
    fn allocation_bound_is_measured() {
        let base = CountingAllocator::mark();
        let big = vec![1u8; 8 << 20];
        drop(big);
        assert!(CountingAllocator::peak_since(base) >= 8 << 20);
    }

    #[test]
    #[should_panic(expected = "succeeded on a disk")]
    fn a_disk_that_reads_past_its_end_fails() {
        /// Claims 4 KiB but reads anything as zeros.
        struct Lenient;
        impl VirtualDisk for Lenient {
            fn capacity(&self) -> u64 {
                4096
            }
            fn read_at(&self, _offset: u64, buf: &mut [u8]) -> Result<()> {
                buf.fill(0);
                Ok(())
            }
            fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
                Ok(vec![Extent::new(offset, length, ExtentKind::Zero)])
            }
            fn info(&self) -> aero_plugin_api::DiskInfo {
                aero_plugin_api::DiskInfo::default()
            }
        }
        check_disk(&Lenient);
    }
}
