//! Fuzz harnesses of aero-host.
//!
//! Each target is one harness function over arbitrary bytes plus one corpus directory,
//! `fuzz/corpus/<target>/`; inputs that once failed are kept in `fuzz/regressions/<target>/`.
//! [`TARGETS`] lists them: the libFuzzer binaries in `fuzz_targets/` call [`run`], and
//! `tests/replay.rs` runs every corpus and regression file through the same harnesses on stable.
//!
//! A harness panics when the code under test breaks its contract; errors returned for damaged
//! input are fine.

mod config;
mod documents;
mod formats;
mod http;

pub use formats::{check_format, format, with_vhd_checksums, ALLOCATION_BOUND};

use aero_plugin_testkit::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

/// A fuzz target: its name (the libFuzzer binary and the corpus directory) and its harness.
pub struct Target {
    /// `format_qcow2`: `fuzz_targets/<name>.rs`, `corpus/<name>/`, `regressions/<name>/`.
    pub name: &'static str,
    /// Runs one input; panics when a contract is broken.
    pub run: fn(&[u8]),
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "format_raw",
        run: |data| check_format("raw", data),
    },
    Target {
        name: "format_qcow2",
        run: |data| check_format("qcow2", data),
    },
    Target {
        name: "format_vhd",
        run: |data| {
            check_format("vhd", data);
            check_format("vhd", &with_vhd_checksums(data));
        },
    },
    Target {
        name: "format_aerosparse",
        run: |data| check_format("aerosparse", data),
    },
    Target {
        name: "format_vmdk",
        run: |data| check_format("vmdk", data),
    },
    Target {
        name: "manifest",
        run: documents::check_manifest,
    },
    Target {
        name: "meta",
        run: documents::check_meta,
    },
    Target {
        name: "latest",
        run: documents::check_latest,
    },
    Target {
        name: "catalog",
        run: documents::check_catalog,
    },
    Target {
        name: "http_range",
        run: http::check_range,
    },
    Target {
        name: "http_conditional",
        run: http::check_conditionals,
    },
    Target {
        name: "config",
        run: config::check_config,
    },
];

/// Runs `data` through the target called `name` (the entry point of every libFuzzer binary).
pub fn run(name: &str, data: &[u8]) {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target called {name}"));
    (target.run)(data)
}
