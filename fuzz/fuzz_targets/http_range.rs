//! The server's `Range` parser against a reference, see `aero_fuzz::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aero_fuzz::run("http_range", data));
