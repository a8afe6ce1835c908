//! aero-host's integration tests, run against the built binary: one test binary, one module per
//! area, one shared [`support`] module. A test that needs qemu-img, s3s-fs, curl or Chromium
//! fails with an install hint when the tool is missing; none passes by skipping.

mod boot_qemu;
mod cli_publish_flags;
mod config_run;
mod convert_cli;
mod drift;
mod gateway;
mod gateway_access;
mod hostile_images;
mod nbd_hostile;
mod nbd_qemu;
mod plugins_cli;
mod publish_backends;
mod publish_faults;
mod publish_immutable;
mod publish_incremental;
mod publish_roundtrip;
mod publish_s3_credentials;
mod pull_archive;
mod pull_catalog;
mod pull_http;
mod serve_access;
mod serve_access_browser;
mod serve_browser;
mod serve_cache;
mod serve_hostile;
mod serve_http;
mod serve_limits;
mod serve_qemu;
mod support;
mod verify_cli;
mod verify_http;
