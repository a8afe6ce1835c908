//! The qcow2 format plugin on an image held in memory: see `aero_fuzz::check_format`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aero_fuzz::run("format_qcow2", data));
