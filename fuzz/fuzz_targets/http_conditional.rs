//! The server's conditional headers against RFC 9110, see `aero_fuzz::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aero_fuzz::run("http_conditional", data));
