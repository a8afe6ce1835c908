//! Runs every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through its
//! target's harness, so that stable `cargo test` replays what the fuzzers found.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn corpora_and_regressions_pass_their_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for target in aero_fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target.name));
        assert!(!corpus.is_empty(), "{}: the corpus is empty", target.name);
        let regressions = inputs(&root.join("regressions").join(target.name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("reading a corpus file");
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.run)(&data))) {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failures.push(format!("{}: {message}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "harness failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_libfuzzer_binary_running_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in aero_fuzz::TARGETS {
        let bin = root
            .join("fuzz_targets")
            .join(format!("{}.rs", target.name));
        let text =
            std::fs::read_to_string(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let call = format!("aero_fuzz::run(\"{}\", data)", target.name);
        assert!(
            text.contains(&call),
            "{} does not call {call}",
            bin.display()
        );
    }
}
