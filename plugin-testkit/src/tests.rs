//! The suite fails deliberately broken plugins, each on the check that covers the fault.

use super::*;
use aero_plugin_api::{
    ByteSource, DiskInfo, Error, Extent, ExtentKind, OpenContext, ProbeInput, ProbeResult,
    VirtualDisk,
};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

const MAGIC: &[u8; 8] = b"MEMDISK1";
const BLOCK: u64 = 4096;
const SIZE: usize = 256 << 10;

/// What the test plugin gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    WrongByte,
    PanicOnRead,
    OverlappingExtents,
    ZeroOverData,
    ReadsPastEnd,
    ClaimsEverything,
    AcceptsInvalid,
    Greedy,
    HangsOnOddSizes,
}

/// `mem` images: `MEMDISK1` followed by the guest-visible bytes.
struct MemFormat(Fault);

impl DiskFormat for MemFormat {
    fn name(&self) -> &str {
        "mem"
    }

    fn version(&self) -> &str {
        "0"
    }

    fn probe(&self, input: &ProbeInput<'_>) -> ProbeResult {
        if self.0 == Fault::ClaimsEverything || input.head.starts_with(MAGIC) {
            ProbeResult::Match
        } else {
            ProbeResult::NoMatch
        }
    }

    fn open(
        &self,
        source: Arc<dyn ByteSource>,
        _ctx: &OpenContext<'_>,
    ) -> aero_plugin_api::Result<Arc<dyn VirtualDisk>> {
        let mut magic = [0u8; 8];
        if self.0 != Fault::AcceptsInvalid {
            source.read_at(0, &mut magic)?;
            if &magic != MAGIC {
                return Err(Error::corrupt("bad magic"));
            }
        }
        let capacity = source.len().saturating_sub(8);
        if self.0 == Fault::HangsOnOddSizes && capacity % 512 != 0 {
            std::thread::sleep(Duration::from_secs(5));
        }
        let ballast = if self.0 == Fault::Greedy {
            vec![0u8; 300 << 20]
        } else {
            Vec::new()
        };
        Ok(Arc::new(MemDisk {
            source,
            capacity,
            fault: self.0,
            _ballast: ballast,
        }))
    }
}

struct MemDisk {
    source: Arc<dyn ByteSource>,
    capacity: u64,
    fault: Fault,
    _ballast: Vec<u8>,
}

impl VirtualDisk for MemDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> aero_plugin_api::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.capacity) {
            if self.fault == Fault::ReadsPastEnd {
                buf.fill(0);
                return Ok(());
            }
            return Err(Error::out_of_bounds(
                offset,
                buf.len() as u64,
                self.capacity,
            ));
        }
        if self.fault == Fault::PanicOnRead && end > Some(self.capacity / 2) {
            panic!("read beyond the middle");
        }
        self.source.read_at(offset + 8, buf)?;
        if self.fault == Fault::WrongByte && offset <= 70_000 && end > Some(70_000) {
            buf[(70_000 - offset) as usize] ^= 1;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, length: u64) -> aero_plugin_api::Result<Vec<Extent>> {
        if offset
            .checked_add(length)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(Error::out_of_bounds(offset, length, self.capacity));
        }
        let mut extents: Vec<Extent> = Vec::new();
        let mut at = offset;
        while at < offset + length {
            let next = ((at / BLOCK + 1) * BLOCK).min(offset + length);
            let mut buf = vec![0u8; (next - at) as usize];
            self.read_at(at, &mut buf)?;
            let kind = if self.fault != Fault::ZeroOverData && buf.iter().any(|&b| b != 0) {
                ExtentKind::Data
            } else {
                ExtentKind::Zero
            };
            match extents.last_mut() {
                Some(last) if last.kind == kind => last.length += next - at,
                _ => extents.push(Extent::new(at, next - at, kind)),
            }
            at = next;
        }
        if self.fault == Fault::OverlappingExtents && extents.len() > 1 {
            extents[0].length += 1;
        }
        Ok(extents)
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::new(Some(BLOCK))
    }
}

/// `disk.raw` and `disk.mem` with the same bytes, an invalid `trunc.mem` and another format.
fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("aero-conformance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut raw = vec![0u8; SIZE];
        for range in [0..4096, 65536..73728, SIZE - 4096..SIZE] {
            for i in range {
                raw[i] = (i * 7 % 251) as u8 | 1;
            }
        }
        let sha = hex::encode(Sha256::digest(&raw));
        std::fs::write(dir.join("disk.mem"), [&MAGIC[..], &raw].concat()).unwrap();
        std::fs::write(dir.join("disk.raw"), raw).unwrap();
        std::fs::write(dir.join("trunc.mem"), &MAGIC[..4]).unwrap();
        std::fs::write(dir.join("other.img"), b"OTHERFMT and some more bytes").unwrap();
        std::fs::write(
            dir.join("expected.tsv"),
            format!(
                "name\tqemu_format\tvirtual_size\tsha256_of_raw_view\tnotes\n\
                 disk.raw\traw\t{SIZE}\t{sha}\t\n\
                 disk.mem\tmem\t{SIZE}\t{sha}\t\n\
                 trunc.mem\tmem\t-\t-\ttruncated file\n\
                 other.img\tother\t-\t-\t\n"
            ),
        )
        .unwrap();
        Fixtures::load(&dir).unwrap()
    })
}

fn check(fault: Fault) -> Vec<CheckOutcome> {
    let limits = Limits {
        check_timeout: Duration::from_secs(30),
        fuzz_timeout: Duration::from_secs(1),
        fuzz_cases: 16,
        alloc_bound: 64 << 20,
    };
    run_with(Arc::new(MemFormat(fault)), fixtures(), &limits)
}

fn failed(outcomes: &[CheckOutcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.name.as_str())
        .collect()
}

fn detail<'a>(outcomes: &'a [CheckOutcome], name: &str) -> &'a str {
    &outcomes.iter().find(|o| o.name == name).unwrap().detail
}

#[test]
fn a_correct_plugin_passes_every_check() {
    let outcomes = check(Fault::None);
    assert!(failed(&outcomes).is_empty(), "{outcomes:#?}");
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    for name in [
        "disk.mem: probe",
        "disk.mem: full read",
        "disk.mem: block status",
        "disk.mem: mutated copies",
        "trunc.mem: invalid image refused",
        "mem: other formats' images not claimed",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(detail(&outcomes, "disk.mem: mutated copies").contains("peak"));
}

#[test]
fn wrong_bytes_fail_the_reads() {
    let outcomes = check(Fault::WrongByte);
    let failed = failed(&outcomes);
    assert!(failed.contains(&"disk.mem: full read"), "{failed:?}");
    assert!(detail(&outcomes, "disk.mem: full read").contains("byte 70000"));
    assert!(failed
        .iter()
        .all(|n| n.ends_with("read") || n.ends_with("reads")));
}

#[test]
fn panics_are_failures() {
    let outcomes = check(Fault::PanicOnRead);
    assert!(detail(&outcomes, "disk.mem: full read").contains("panicked"));
    assert!(failed(&outcomes).contains(&"disk.mem: mutated copies"));
}

#[test]
fn bad_extents_fail_block_status() {
    let outcomes = check(Fault::OverlappingExtents);
    assert_eq!(failed(&outcomes), ["disk.mem: block status"]);
    assert!(detail(&outcomes, "disk.mem: block status").contains("overlaps"));
    let outcomes = check(Fault::ZeroOverData);
    assert_eq!(failed(&outcomes), ["disk.mem: block status"]);
}

#[test]
fn reads_past_the_end_must_fail() {
    assert_eq!(
        failed(&check(Fault::ReadsPastEnd)),
        ["disk.mem: reads past the end"]
    );
}

#[test]
fn probing_other_formats_must_not_match() {
    assert_eq!(
        failed(&check(Fault::ClaimsEverything)),
        ["mem: other formats' images not claimed"]
    );
}

#[test]
fn invalid_images_must_be_refused() {
    assert!(failed(&check(Fault::AcceptsInvalid)).contains(&"trunc.mem: invalid image refused"));
}

#[test]
fn unbounded_allocation_and_hangs_fail_the_mutations() {
    let outcomes = check(Fault::Greedy);
    assert!(detail(&outcomes, "disk.mem: mutated copies").contains("bound 64 MiB"));
    let outcomes = check(Fault::HangsOnOddSizes);
    assert!(detail(&outcomes, "disk.mem: mutated copies").contains("did not finish"));
}

#[test]
fn a_plugin_without_fixtures_fails() {
    struct Nothing;
    impl DiskFormat for Nothing {
        fn name(&self) -> &str {
            "nothing"
        }
        fn version(&self) -> &str {
            "0"
        }
        fn probe(&self, _: &ProbeInput<'_>) -> ProbeResult {
            ProbeResult::NoMatch
        }
        fn open(
            &self,
            _: Arc<dyn ByteSource>,
            _: &OpenContext<'_>,
        ) -> aero_plugin_api::Result<Arc<dyn VirtualDisk>> {
            Err(Error::unsupported("nothing"))
        }
    }
    let outcomes = run(Arc::new(Nothing), fixtures());
    assert_eq!(outcomes.len(), 1);
    assert!(!outcomes[0].passed);
    assert!(outcomes[0]
        .detail
        .contains("no fixtures for format nothing"));
}
