//! The conformance suite of aero-host format plugins, a dev-dependency of every plugin.
//!
//! Any format plugin, inside this workspace or not, runs it against a fixture set with one
//! line in its own `tests/conformance.rs`:
//!
//! ```ignore
//! aero_plugin_testkit::conformance_tests!(format_qcow2::Qcow2Format);
//! ```
//!
//! That installs [`CountingAllocator`] and adds a test that runs [`run`] on
//! [`Fixtures::builtin`] (the directory in `$AERO_FIXTURES`, else the project's set) and
//! fails listing every failed check. A plugin shipped as a `cdylib` builds itself with
//! [`build_plugin_library`], loads itself with [`load_plugin`] and calls
//! [`assert_conformance`]; [`open_path`] opens images for its own tests. The
//! `aero-plugin-check` binary runs the suite on libraries for `aero-host plugins test`. For each image of the plugin's
//! format (its name or an alias equals the image's `qemu_format`) the suite compares the
//! plugin with the image's raw view (see [`Fixtures`]): capacity, a full sequential read and
//! its sha256, random reads (empty, one byte, unaligned, across cluster boundaries, the last
//! byte), concurrent reads, reads and block-status queries past the end (errors, never
//! panics), block status (exact cover in order, zero extents read as zeros), probing (its own
//! images are claimed, other formats' images are not), backing files (refused unless allowed),
//! invalid images (refused on open or on read), and [`FUZZ_CASES`] truncated or byte-flipped
//! copies per image, each of which must finish within [`FUZZ_TIMEOUT`] without panicking and
//! without its thread holding more than [`ALLOCATION_BOUND`] bytes at once.
//! A plugin with no images in the set fails.

mod alloc;
mod build;
mod checks;
mod fixtures;
mod fuzz;
mod guard;
mod open;
mod oracle;

#[cfg(test)]
mod tests;

pub use aero_plugin_host::library::{load_library, load_plugin, LoadedPlugin};
pub use alloc::CountingAllocator;
pub use build::{build_plugin_library, build_workspace_binary};
pub use checks::check_cover;
pub use fixtures::{Fixture, Fixtures, FIXTURES_ENV};
pub use open::{open_path, open_source, Opened};

use aero_plugin_api::{DiskFormat, Registry};
use checks::{Subject, DISK_CHECKS};
use guard::guarded;
use oracle::Oracles;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes a thread exercising one mutated image may hold at once (256 MiB).
pub const ALLOCATION_BOUND: u64 = 256 << 20;
/// Mutated copies tried per image.
pub const FUZZ_CASES: u32 = 64;
/// Time allowed to open and exercise one mutated copy.
pub const FUZZ_TIMEOUT: Duration = Duration::from_secs(20);
/// Time allowed for any other single check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// The result of one check on one image (`v3.qcow2: random reads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// `<image>: <check>`, or `<format>: <check>` for checks across images.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What was seen: a summary when passed, the problem when failed.
    pub detail: String,
}

impl CheckOutcome {
    fn new(name: String, result: Result<String, String>) -> Self {
        let passed = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        CheckOutcome {
            name,
            passed,
            detail,
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.passed { "ok  " } else { "FAIL" };
        write!(f, "{status} {}: {}", self.name, self.detail)
    }
}

/// Timeouts and bounds; tests of the suite itself shorten them.
pub(crate) struct Limits {
    pub(crate) check_timeout: Duration,
    pub(crate) fuzz_timeout: Duration,
    pub(crate) fuzz_cases: u32,
    pub(crate) alloc_bound: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            check_timeout: CHECK_TIMEOUT,
            fuzz_timeout: FUZZ_TIMEOUT,
            fuzz_cases: FUZZ_CASES,
            alloc_bound: ALLOCATION_BOUND,
        }
    }
}

/// Runs every check of `format` against its images in `fixtures`: one outcome per check per
/// image, then the checks across images.
pub fn run(format: Arc<dyn DiskFormat>, fixtures: &Fixtures) -> Vec<CheckOutcome> {
    run_with(format, fixtures, &Limits::default())
}

/// Runs the suite, prints one line per check and panics listing every failed check.
pub fn assert_conformance(format: Arc<dyn DiskFormat>, fixtures: &Fixtures) {
    let name = format.name().to_string();
    let outcomes = run(format, fixtures);
    for outcome in &outcomes {
        println!("{outcome}");
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("  {}: {}", o.name, o.detail))
        .collect();
    println!(
        "{name}: {} passed, {} failed",
        outcomes.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} conformance checks failed for format {name}:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

pub(crate) fn run_with(
    format: Arc<dyn DiskFormat>,
    fixtures: &Fixtures,
    limits: &Limits,
) -> Vec<CheckOutcome> {
    let plugin = format.name().to_string();
    let own = fixtures.for_format(format.as_ref());
    if own.is_empty() {
        let detail = format!(
            "no fixtures for format {plugin} in {}",
            fixtures.dir().display()
        );
        return vec![CheckOutcome::new(
            format!("{plugin}: fixtures"),
            Err(detail),
        )];
    }
    let mut registry = Registry::new();
    if let Err(e) = registry.add(Arc::clone(&format)) {
        return vec![CheckOutcome::new(
            format!("{plugin}: registry"),
            Err(e.to_string()),
        )];
    }
    let fallback = {
        let format = Arc::clone(&format);
        guarded(limits.check_timeout, move || {
            checks::is_fallback(format.as_ref())
        })
        .unwrap_or(false)
    };
    let suite = Suite {
        format: &format,
        registry,
        fallback,
        limits,
    };
    let mut oracles = Oracles::new(fixtures);
    let mut outcomes = Vec::new();
    for fixture in own {
        suite.check_fixture(fixture, &mut oracles, &mut outcomes);
    }
    let probing = Arc::clone(&format);
    let all = fixtures.clone();
    outcomes.push(CheckOutcome::new(
        format!("{plugin}: other formats' images not claimed"),
        suite.guard(move || checks::probe_others(probing.as_ref(), &all)),
    ));
    outcomes
}

/// One plugin under test.
struct Suite<'a> {
    format: &'a Arc<dyn DiskFormat>,
    registry: Registry,
    fallback: bool,
    limits: &'a Limits,
}

impl Suite<'_> {
    /// Runs `check` on its own thread within the check timeout.
    fn guard(
        &self,
        check: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) -> Result<String, String> {
        guarded(self.limits.check_timeout, check).and_then(|result| result)
    }

    fn check_fixture(
        &self,
        fixture: &Fixture,
        oracles: &mut Oracles<'_>,
        outcomes: &mut Vec<CheckOutcome>,
    ) {
        let mut push = |check: &str, result| {
            outcomes.push(CheckOutcome::new(
                format!("{}: {check}", fixture.name),
                result,
            ));
        };
        let (registry, owned) = (self.registry.clone(), fixture.clone());
        if fixture.must_fail() {
            push(
                "invalid image refused",
                self.guard(move || checks::refuses_invalid(&registry, &owned)),
            );
            return;
        }
        let (format, fallback) = (Arc::clone(self.format), self.fallback);
        push(
            "probe",
            self.guard(move || checks::probe_own(format.as_ref(), &owned, fallback)),
        );
        let oracle = match oracles.raw_view(fixture) {
            Ok(oracle) => oracle,
            Err(e) => return push("raw view", Err(e)),
        };
        let owned = fixture.clone();
        let opened = guarded(self.limits.check_timeout, move || {
            let disk = checks::open(&registry, &owned, true).map_err(|e| e.to_string())?;
            let info = disk.info();
            Ok((disk, info))
        })
        .and_then(|result| result);
        let (disk, info) = match opened {
            Ok(opened) => opened,
            Err(e) => return push("open", Err(e)),
        };
        push(
            "open",
            Ok(format!(
                "cluster size {:?}, {} backing files",
                info.cluster_size,
                info.backing_chain.len()
            )),
        );
        let subject = Arc::new(Subject {
            disk: Arc::clone(&disk),
            oracle,
            sha256: fixture.sha256.clone(),
            seed: checks::seed_of(&fixture.name),
        });
        for (check, run) in DISK_CHECKS {
            let subject = Arc::clone(&subject);
            push(check, self.guard(move || run(&subject)));
        }
        if fixture.has_backing() {
            let (registry, owned) = (self.registry.clone(), fixture.clone());
            push(
                "backing file",
                self.guard(move || checks::backing(&registry, &owned, disk.as_ref())),
            );
        }
        push(
            "mutated copies",
            fuzz::mutated_copies(self.format, fixture, self.limits),
        );
    }
}

/// Adds the conformance test of a format plugin to an integration-test crate:
/// `aero_plugin_testkit::conformance_tests!(format_qcow2::Qcow2Format);` installs
/// [`CountingAllocator`] as the `#[global_allocator]` and defines `#[test] fn conformance`,
/// which runs [`assert_conformance`] on [`Fixtures::builtin`].
#[macro_export]
macro_rules! conformance_tests {
    ($format:expr) => {
        #[global_allocator]
        static CONFORMANCE_ALLOCATOR: $crate::CountingAllocator = $crate::CountingAllocator::new();

        #[test]
        fn conformance() {
            $crate::assert_conformance(
                ::std::sync::Arc::new($format),
                &$crate::Fixtures::builtin(),
            );
        }
    };
}
