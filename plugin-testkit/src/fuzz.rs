//! Property-based robustness: truncated and byte-flipped copies of a fixture, held in memory,
//! never make the plugin panic, hang or allocate without bound.

use crate::alloc;
use crate::checks::seed_of;
use crate::fixtures::Fixture;
use crate::guard::guarded;
use crate::Limits;
use aero_plugin_api::{ByteSource, DiskFormat, MemorySource, Registry};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes at the start of an image whose bytes get flipped.
const FLIP_WINDOW: usize = 64 << 10;
/// Largest read of a mutated image.
const READ_LEN: u64 = 64 << 10;
/// Largest block_status query on a mutated image.
const STATUS_LEN: u64 = 1 << 30;

/// A change to a copy of an image.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep only the first `n` bytes.
    Truncate(usize),
    /// XOR the byte at each offset with the mask (never 0).
    Flip(Vec<(usize, u8)>),
}

impl Mutation {
    fn apply(&self, image: &[u8]) -> Vec<u8> {
        match self {
            Mutation::Truncate(n) => image[..*n].to_vec(),
            Mutation::Flip(flips) => {
                let mut copy = image.to_vec();
                for &(at, mask) in flips {
                    copy[at] ^= mask;
                }
                copy
            }
        }
    }
}

/// A mutated image in memory that claims the fixture's path, so that backing files next to
/// the fixture are found.
struct MutatedImage {
    bytes: MemorySource,
    path: PathBuf,
}

impl ByteSource for MutatedImage {
    fn len(&self) -> u64 {
        self.bytes.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> aero_plugin_api::Result<()> {
        self.bytes.read_at(offset, buf)
    }

    fn name(&self) -> &str {
        self.bytes.name()
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// Opens `source` and exercises it: capacity, reads at the start, middle and end, and block
/// status. Results are ignored: only panics, hangs and allocations matter.
fn exercise(format: Arc<dyn DiskFormat>, source: Arc<dyn ByteSource>) -> bool {
    let mut registry = Registry::new();
    if registry.add(Arc::clone(&format)).is_err() {
        return false;
    }
    let Ok(opened) = crate::open_source(&registry, source, Some(format.name()), true) else {
        return false;
    };
    let disk = opened.disk;
    let cap = disk.capacity();
    let _ = disk.info();
    let tail = cap.min(READ_LEN);
    for (offset, len) in [
        (0, tail),
        (cap / 2, (cap - cap / 2).min(READ_LEN)),
        (cap - tail, tail),
    ] {
        let _ = disk.read_at(offset, &mut vec![0u8; len as usize]);
    }
    if cap > 0 {
        let _ = disk.block_status(0, cap.min(STATUS_LEN));
        let _ = disk.block_status(cap - tail, tail);
    }
    true
}

/// Runs `limits.fuzz_cases` mutated copies of `fixture` through the plugin.
pub(crate) fn mutated_copies(
    format: &Arc<dyn DiskFormat>,
    fixture: &Fixture,
    limits: &Limits,
) -> Result<String, String> {
    let image = std::fs::read(&fixture.path)
        .map_err(|e| format!("reading {}: {e}", fixture.path.display()))?;
    if image.is_empty() {
        return Ok("empty image: nothing to mutate".into());
    }
    let window = image.len().min(FLIP_WINDOW);
    let strategy = prop_oneof![
        (0..window).prop_map(Mutation::Truncate),
        (0..image.len()).prop_map(Mutation::Truncate),
        prop::collection::vec((0..window, 1..=u8::MAX), 1..=16).prop_map(Mutation::Flip),
    ];
    let config = Config {
        cases: limits.fuzz_cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed_of(&fixture.name)),
        ..Config::default()
    };
    let opened = AtomicUsize::new(0);
    let peak = AtomicU64::new(0);
    let result = TestRunner::new(config).run(&strategy, |mutation| {
        let bytes = mutation.apply(&image);
        // The parent keeps the source alive so its bytes are neither counted nor freed on the
        // case's thread.
        let source: Arc<dyn ByteSource> = Arc::new(MutatedImage {
            bytes: MemorySource::new(&fixture.name, bytes),
            path: fixture.path.clone(),
        });
        let (format, case_source) = (Arc::clone(format), Arc::clone(&source));
        let (was_opened, case_peak) = guarded(limits.fuzz_timeout, move || {
            (exercise(format, case_source), alloc::thread_peak())
        })
        .map_err(TestCaseError::fail)?;
        opened.fetch_add(usize::from(was_opened), Ordering::Relaxed);
        peak.fetch_max(case_peak, Ordering::Relaxed);
        if case_peak > limits.alloc_bound {
            return Err(TestCaseError::fail(format!(
                "held {} MiB at once (bound {} MiB)",
                case_peak >> 20,
                limits.alloc_bound >> 20
            )));
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(format!(
            "{} copies, {} opened; {}",
            limits.fuzz_cases,
            opened.into_inner(),
            if alloc::installed() {
                format!("peak {} KiB allocated", peak.into_inner() >> 10)
            } else {
                "allocations not measured (no CountingAllocator installed)".into()
            }
        )),
        Err(TestError::Fail(reason, mutation)) => Err(format!("{reason} with {mutation:?}")),
        Err(TestError::Abort(reason)) => Err(format!("aborted: {reason}")),
    }
}
