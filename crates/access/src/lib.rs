//! Access to private images, shared by the gateway (which grants access) and `serve` (which
//! enforces it) — SPEC 4.5, 4.7, 4.8 and Part 5:
//!
//! - [`carrier`]: where a lease travels in an HTTP request (bearer, query, cookie);
//! - [`keys`]: the lease-key file (`--lease-keys FILE`): one signing key, every key verifies;
//! - [`lease`]: leases, short-lived HMAC-signed capability tokens for one image (and version),
//!   scope `disk:read`, with an expiry; minted by the gateway, verified by `serve`;
//! - [`visibility`]: the object beside `latest.json` that tells `serve` whether an image is
//!   private, shared or public;
//! - [`share`]: share-link tokens (256 random bits, stored as their sha256);
//! - [`matrix`]: who may do what (SPEC 5.2), one table;
//! - [`cloudfront`]: CloudFront signed cookies and URLs (RSA-SHA1 or ECDSA P-256/SHA-256).
//!
//! Secrets (key material, tokens) never appear in `Debug` output or error messages.

pub mod carrier;
pub mod cloudfront;
pub mod keys;
pub mod lease;
pub mod matrix;
pub mod share;
pub mod visibility;

pub use keys::{KeyFileError, LeaseKeys};
pub use lease::{Lease, LeaseError, MintError, Minted, LEASE_COOKIE, LEASE_QUERY};
pub use matrix::{Action, Role};
pub use visibility::Visibility;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 before it).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` seconds after the Unix epoch.
fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// An ISO 8601 UTC timestamp with seconds (`2026-11-30T05:30:00Z`), as `expiresAt` values are.
pub fn iso8601(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
