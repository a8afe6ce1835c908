//! The individual checks. Each returns `Ok(detail)` when it passes and `Err(detail)` when not.

use crate::fixtures::{Fixture, Fixtures};
use crate::guard::no_panic;
use crate::oracle::CHUNK;
use aero_plugin_api::{
    ByteSource, DiskFormat, ErrorKind, Extent, ExtentKind, FileSource, ProbeInput, ProbeResult,
    Registry, VirtualDisk,
};
use std::path::Path;
use std::sync::{Arc, Barrier};

/// Random reads per fixture (and per thread in the concurrent check).
const RANDOM_READS: usize = 256;
/// Threads reading at once in the concurrent check.
const THREADS: u64 = 4;
/// Random subranges whose block status is checked.
const SUBRANGES: usize = 64;
/// How much of an invalid image is read looking for the error.
const INVALID_READ_LIMIT: u64 = 1 << 30;

/// What the disk checks look at: an opened fixture and its raw view.
pub(crate) struct Subject {
    pub(crate) disk: Arc<dyn VirtualDisk>,
    pub(crate) oracle: Arc<FileSource>,
    pub(crate) sha256: Option<String>,
    pub(crate) seed: u64,
}

/// A check of an opened disk.
pub(crate) type DiskCheck = fn(&Subject) -> Result<String, String>;

/// The checks run on every opened fixture, with their names.
pub(crate) const DISK_CHECKS: [(&str, DiskCheck); 6] = [
    ("capacity", capacity),
    ("full read", full_read),
    ("random reads", random_reads),
    ("reads past the end", past_end),
    ("concurrent reads", concurrent_reads),
    ("block status", block_status),
];

/// A small deterministic generator (SplitMix64).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A stable seed for a fixture name (FNV-1a).
pub(crate) fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cluster or block size to aim reads at: `info().cluster_size`, else 64 KiB.
fn granule(disk: &dyn VirtualDisk) -> u64 {
    disk.info()
        .cluster_size
        .unwrap_or(64 << 10)
        .clamp(512, 4 << 20)
}

/// A random range inside a disk of `cap > 0` bytes: empty, one byte, unaligned, crossing a
/// granule boundary, one aligned granule, the last byte, or the tail.
fn random_range(rng: &mut Rng, cap: u64, granule: u64) -> (u64, u64) {
    let (offset, len) = match rng.below(7) {
        0 => (rng.below(cap), 0),
        1 => (rng.below(cap), 1),
        2 => (rng.below(cap), 1 + rng.below(3 * granule)),
        3 if cap > granule => {
            let boundary = granule * (1 + rng.below(cap / granule));
            let before = 1 + rng.below(granule);
            (boundary - before, before + 1 + rng.below(granule))
        }
        3 | 4 => (rng.below(cap.div_ceil(granule)) * granule, granule),
        5 => (cap - 1, 1),
        _ => {
            let back = 1 + rng.below(cap.min(3 * granule));
            (cap - back, back)
        }
    };
    (offset, len.min(cap - offset))
}

fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        None
    } else {
        got.iter().zip(want).position(|(a, b)| a != b)
    }
}

/// Reads `[offset, offset + len)` from the disk and the raw view and compares them.
fn compare(s: &Subject, offset: u64, len: u64) -> Result<(), String> {
    let mut got = vec![0u8; len as usize];
    s.disk
        .read_at(offset, &mut got)
        .map_err(|e| format!("read of {len} bytes at {offset} failed: {e}"))?;
    let mut want = vec![0u8; len as usize];
    s.oracle
        .read_at(offset, &mut want)
        .map_err(|e| format!("reading the raw view: {e}"))?;
    match first_difference(&got, &want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "read of {len} bytes at {offset}: byte {} is {:#04x}, expected {:#04x}",
            offset + i as u64,
            got[i],
            want[i]
        )),
    }
}

fn capacity(s: &Subject) -> Result<String, String> {
    let (got, want) = (s.disk.capacity(), s.oracle.len());
    if got == want {
        Ok(format!("{got} bytes"))
    } else {
        Err(format!("capacity is {got} bytes, the raw view has {want}"))
    }
}

/// Reads the whole disk in order and compares it with the raw view, whose sha256 the oracle
/// checked against the expected one: equal bytes mean an equal sha256, without hashing twice.
fn full_read(s: &Subject) -> Result<String, String> {
    let (len, view_len) = (s.disk.capacity(), s.oracle.len());
    if len != view_len {
        return Err(format!("the disk has {len} bytes, the raw view {view_len}"));
    }
    let (mut got, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(CHUNK as u64) as usize;
        let (got, want) = (&mut got[..n], &mut want[..n]);
        s.disk
            .read_at(offset, got)
            .map_err(|e| format!("read of {n} bytes at {offset} failed: {e}"))?;
        s.oracle
            .read_at(offset, want)
            .map_err(|e| format!("reading the raw view: {e}"))?;
        if let Some(i) = first_difference(got, want) {
            return Err(format!(
                "byte {} is {:#04x}, expected {:#04x}",
                offset + i as u64,
                got[i],
                want[i]
            ));
        }
        offset += n as u64;
    }
    Ok(match &s.sha256 {
        Some(sha) => format!("{len} bytes, sha256 {sha}"),
        None => format!("{len} bytes, equal to the raw view"),
    })
}

/// Compares `count` random reads; describes the first few wrong ones.
fn compare_random(s: &Subject, seed: u64, count: usize) -> Result<(), String> {
    let cap = s.oracle.len();
    if cap == 0 {
        return Ok(());
    }
    let granule = granule(s.disk.as_ref());
    let mut rng = Rng::new(seed);
    let mut ranges = vec![(0, cap.min(granule + 1)), (cap - 1, 1)];
    ranges.extend((0..count).map(|_| random_range(&mut rng, cap, granule)));
    let wrong: Vec<String> = ranges
        .iter()
        .filter_map(|&(offset, len)| compare(s, offset, len).err())
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} reads wrong, e.g. {}",
            wrong.len(),
            ranges.len(),
            wrong[..wrong.len().min(3)].join("; ")
        ))
    }
}

fn random_reads(s: &Subject) -> Result<String, String> {
    if s.oracle.is_empty() {
        return Ok("empty disk: nothing to read".into());
    }
    compare_random(s, s.seed, RANDOM_READS)?;
    Ok(format!(
        "{} reads around {}-byte boundaries",
        RANDOM_READS + 2,
        granule(s.disk.as_ref())
    ))
}

fn past_end(s: &Subject) -> Result<String, String> {
    let cap = s.disk.capacity();
    let mut reads = vec![
        (cap, 1),
        (cap, 4096),
        (cap.saturating_add(1 << 30), 512),
        (u64::MAX, 1),
        (u64::MAX - 511, 512),
    ];
    let mut queries = vec![(cap, 1), (u64::MAX, 1), (0, cap + 1)];
    if cap > 0 {
        reads.extend([(cap - 1, 2), (cap - cap.min(4096), 8192)]);
        queries.push((cap - 1, 2));
    }
    let mut problems = Vec::new();
    for &(offset, len) in &reads {
        let mut buf = vec![0u8; len];
        match no_panic(|| s.disk.read_at(offset, &mut buf)) {
            Ok(Err(_)) => {}
            Ok(Ok(())) => problems.push(format!("read of {len} bytes at {offset} succeeded")),
            Err(panic) => problems.push(format!("read of {len} bytes at {offset} {panic}")),
        }
    }
    for &(offset, len) in &queries {
        match no_panic(|| s.disk.block_status(offset, len)) {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => problems.push(format!("block_status({offset}, {len}) succeeded")),
            Err(panic) => problems.push(format!("block_status({offset}, {len}) {panic}")),
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} reads and {} block_status queries refused",
            reads.len(),
            queries.len()
        ))
    } else {
        Err(problems.join("; "))
    }
}

fn concurrent_reads(s: &Subject) -> Result<String, String> {
    if s.oracle.is_empty() {
        return Ok("empty disk: nothing to read".into());
    }
    let barrier = Barrier::new(THREADS as usize);
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let barrier = &barrier;
                // Threads pair up on the same ranges so that they also race on the same data.
                scope.spawn(move || {
                    barrier.wait();
                    compare_random(s, s.seed ^ (i / 2 + 1), RANDOM_READS / 4)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a reader thread panicked".into()))
            })
            .collect()
    });
    let wrong: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if wrong.is_empty() {
        Ok(format!(
            "{THREADS} threads × {} reads",
            RANDOM_READS / 4 + 2
        ))
    } else {
        Err(wrong.join("; "))
    }
}

/// Checks that `extents` cover `[start, end)` in order without gaps, overlaps or empty ones.
pub fn check_cover(extents: &[Extent], start: u64, end: u64) -> Result<(), String> {
    let mut at = start;
    for e in extents {
        if e.length == 0 {
            return Err(format!("empty extent {e:?}"));
        }
        if e.offset != at {
            let what = if e.offset < at {
                "overlaps"
            } else {
                "leaves a gap before"
            };
            return Err(format!("extent {e:?} {what} offset {at}"));
        }
        at = match e.offset.checked_add(e.length) {
            Some(next) if next <= end => next,
            _ => return Err(format!("extent {e:?} ends past {end}")),
        };
    }
    if at == end {
        Ok(())
    } else {
        Err(format!("extents stop at {at}, not at {end}"))
    }
}

/// Checks that the zero extents among `extents` read as zeros from the disk and the raw view.
fn check_zeros(s: &Subject, extents: &[Extent]) -> Result<(), String> {
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    for e in extents.iter().filter(|e| e.kind == ExtentKind::Zero) {
        let mut offset = e.offset;
        while offset < e.end() {
            let n = (e.end() - offset).min(CHUNK as u64) as usize;
            let buf = &mut buf[..n];
            s.disk
                .read_at(offset, buf)
                .map_err(|e| format!("read of {n} bytes at {offset} failed: {e}"))?;
            if *buf != zeros[..n] {
                return Err(format!(
                    "zero extent {e:?} reads non-zero bytes near {offset}"
                ));
            }
            s.oracle
                .read_at(offset, buf)
                .map_err(|e| format!("reading the raw view: {e}"))?;
            if *buf != zeros[..n] {
                return Err(format!(
                    "zero extent {e:?} has data in the raw view near {offset}"
                ));
            }
            offset += n as u64;
        }
    }
    Ok(())
}

fn block_status(s: &Subject) -> Result<String, String> {
    let cap = s.disk.capacity();
    let whole = s
        .disk
        .block_status(0, cap)
        .map_err(|e| format!("block_status(0, {cap}) failed: {e}"))?;
    check_cover(&whole, 0, cap).map_err(|e| format!("block_status(0, {cap}): {e}"))?;
    check_zeros(s, &whole)?;
    let granule = granule(s.disk.as_ref());
    let mut rng = Rng::new(s.seed.rotate_left(17));
    let subranges = if cap == 0 { 0 } else { SUBRANGES };
    for _ in 0..subranges {
        let (offset, len) = random_range(&mut rng, cap, granule);
        let len = len.max(1);
        let extents = s
            .disk
            .block_status(offset, len)
            .map_err(|e| format!("block_status({offset}, {len}) failed: {e}"))?;
        check_cover(&extents, offset, offset + len)
            .map_err(|e| format!("block_status({offset}, {len}): {e}"))?;
        check_zeros(s, &extents)?;
    }
    let zero: u64 = whole
        .iter()
        .filter(|e| e.kind == ExtentKind::Zero)
        .map(|e| e.length)
        .sum();
    Ok(format!(
        "{} extents ({zero} bytes zero), {subranges} subranges",
        whole.len()
    ))
}

/// What `format` says about the file at `path`.
fn probe_file(format: &dyn DiskFormat, path: &Path) -> Result<ProbeResult, String> {
    let source = FileSource::open(path).map_err(|e| e.to_string())?;
    ProbeInput::read(&source, |input| no_panic(|| format.probe(&input)))
        .map_err(|e| e.to_string())?
        .map_err(|panic| format!("probe {panic}"))
}

/// Whether `format` is a fallback format (raw): it says `Fallback` for arbitrary bytes.
pub(crate) fn is_fallback(format: &dyn DiskFormat) -> bool {
    let mut rng = Rng::new(1);
    let head: Vec<u8> = (0..ProbeInput::HEAD_LEN)
        .map(|_| rng.next() as u8)
        .collect();
    let input = ProbeInput::new(&head, &head[..ProbeInput::TAIL_LEN], 1 << 20);
    no_panic(|| format.probe(&input)) == Ok(ProbeResult::Fallback)
}

/// The plugin recognises its own fixture.
pub(crate) fn probe_own(
    format: &dyn DiskFormat,
    fixture: &Fixture,
    fallback: bool,
) -> Result<String, String> {
    match probe_file(format, &fixture.path)? {
        ProbeResult::Match => Ok("Match".into()),
        ProbeResult::Fallback if fallback => Ok("Fallback (a fallback format)".into()),
        other => Err(format!("probe says {other:?}, expected Match")),
    }
}

/// The plugin claims none of the other formats' fixtures.
pub(crate) fn probe_others(format: &dyn DiskFormat, fixtures: &Fixtures) -> Result<String, String> {
    let others: Vec<&Fixture> = fixtures
        .entries()
        .iter()
        .filter(|f| !f.belongs_to(format))
        .collect();
    let mut claimed = Vec::new();
    for fixture in &others {
        match probe_file(format, &fixture.path) {
            Ok(ProbeResult::Match) => {
                claimed.push(format!("{} ({})", fixture.name, fixture.qemu_format))
            }
            Ok(_) => {}
            Err(e) => claimed.push(format!("{}: {e}", fixture.name)),
        }
    }
    if claimed.is_empty() {
        Ok(format!(
            "{} images of other formats not claimed",
            others.len()
        ))
    } else {
        Err(format!("probe says Match for {}", claimed.join(", ")))
    }
}

/// Opens `fixture` with the plugin of `registry`.
pub(crate) fn open(
    registry: &Registry,
    fixture: &Fixture,
    allow_backing: bool,
) -> aero_plugin_api::Result<Arc<dyn VirtualDisk>> {
    let format = registry.formats()[0].name().to_string();
    crate::open_path(registry, &fixture.path, Some(&format), allow_backing)
        .map(|opened| opened.disk)
}

/// An invalid image fails to open, or fails on a read.
pub(crate) fn refuses_invalid(registry: &Registry, fixture: &Fixture) -> Result<String, String> {
    let disk = match open(registry, fixture, true) {
        Err(e) => return Ok(format!("refused: {e}")),
        Ok(disk) => disk,
    };
    let limit = disk.capacity().min(INVALID_READ_LIMIT);
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < limit {
        let n = (limit - offset).min(CHUNK as u64) as usize;
        if let Err(e) = disk.read_at(offset, &mut buf[..n]) {
            return Ok(format!("opened; reading at {offset} failed: {e}"));
        }
        offset += n as u64;
    }
    Err(format!(
        "opened and read {limit} bytes without an error (capacity {})",
        disk.capacity()
    ))
}

/// An image with a backing file is refused without `allow_backing` and lists its chain with it.
pub(crate) fn backing(
    registry: &Registry,
    fixture: &Fixture,
    disk: &dyn VirtualDisk,
) -> Result<String, String> {
    match open(registry, fixture, false) {
        Ok(_) => return Err("opened with allow_backing = false".into()),
        Err(e) if e.kind() == ErrorKind::BackingNotAllowed => {}
        Err(e) => {
            return Err(format!(
                "with allow_backing = false: {:?} error, expected BackingNotAllowed: {e}",
                e.kind()
            ))
        }
    }
    match disk.info().backing_chain.len() {
        0 => Err("info().backing_chain is empty".into()),
        n => Ok(format!(
            "refused without allow_backing; chain of {n} when allowed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(offset: u64, length: u64) -> Extent {
        Extent::new(offset, length, ExtentKind::Data)
    }

    #[test]
    fn cover_finds_gaps_overlaps_and_short_ends() {
        assert!(check_cover(&[extent(0, 5), extent(5, 5)], 0, 10).is_ok());
        assert!(check_cover(&[], 3, 3).is_ok());
        assert!(check_cover(&[extent(0, 5), extent(6, 4)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 5), extent(4, 6)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 5)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 11)], 0, 10).is_err());
        assert!(check_cover(&[extent(0, 0), extent(0, 10)], 0, 10).is_err());
        assert!(check_cover(&[extent(1, u64::MAX)], 1, 10).is_err());
    }

    #[test]
    fn random_ranges_stay_inside_and_hit_the_edges() {
        let mut rng = Rng::new(3);
        for cap in [1, 511, 4096, 65537, 1 << 26] {
            let ranges: Vec<_> = (0..500)
                .map(|_| random_range(&mut rng, cap, 4096))
                .collect();
            assert!(
                ranges.iter().all(|&(o, l)| o < cap && o + l <= cap),
                "{cap}"
            );
            assert!(ranges.contains(&(cap - 1, 1)));
            assert!(ranges.iter().any(|&(_, l)| l == 0));
        }
    }
}
