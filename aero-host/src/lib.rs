//! The command line and configuration layer of the `aero-host` binary: its clap structs
//! ([`cli`]), the config file of `aero-host run` ([`config`]), the serve settings
//! ([`serve_args`]) and the gateway settings ([`gateway_args`]). It is a library target only so
//! that the fuzz targets (`fuzz/`) can call the config loader; the binary (`src/main.rs`) is its one other user, and it is no API.

pub mod cli;
pub mod config;
pub mod gateway_args;
pub mod serve_args;
