//! The config loader of `aero-host run`, see `aero_fuzz::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aero_fuzz::run("config", data));
