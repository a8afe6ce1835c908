//! The image catalog: SPEC 3.4 rules and the round trip, see `aero_fuzz::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aero_fuzz::run("catalog", data));
