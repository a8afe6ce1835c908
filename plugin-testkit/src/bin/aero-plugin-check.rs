//! Runs the conformance suite on format plugin libraries, on the counting allocator the
//! allocation bound needs. `aero-host plugins test` runs it.
//!
//! Usage: `aero-plugin-check [--fixtures DIR] LIBRARY...`. Prints one line per check and a
//! closing `N passed, M failed` on stdout. Exits 0 when every check passed, 1 when one
//! failed, 2 with the error on stderr when a library or the fixtures cannot be loaded.

use aero_plugin_testkit::{load_library, run, CountingAllocator, Fixtures};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

fn main() -> ExitCode {
    match check(std::env::args_os().skip(1)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Tests every library named in `args`; whether every check passed.
fn check(mut args: impl Iterator<Item = std::ffi::OsString>) -> Result<bool, String> {
    let mut fixtures = None;
    let mut libraries = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--fixtures" {
            let dir = args.next().ok_or("--fixtures needs a directory")?;
            fixtures = Some(PathBuf::from(dir));
        } else {
            libraries.push(PathBuf::from(arg));
        }
    }
    if libraries.is_empty() {
        return Err("no plugin to test: pass --plugin PATH (a format plugin library)".into());
    }
    let fixtures = match fixtures {
        Some(dir) => Fixtures::load(dir)?,
        None => Fixtures::builtin(),
    };
    let (mut passed, mut failed) = (0, 0);
    for path in &libraries {
        let format = load_library(path).map_err(|e| e.to_string())?;
        println!(
            "testing format plugin '{}' {} from {}",
            format.name(),
            format.version(),
            path.display()
        );
        for outcome in run(format, &fixtures) {
            println!("{outcome}");
            if outcome.passed {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
