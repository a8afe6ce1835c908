//! Lease keys and leases for the access tests: a key file on disk for `serve --lease-keys`,
//! and leases minted with the same library the gateway uses.

use aero_access::LeaseKeys;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lease-key file and the keys it holds.
pub struct Keys {
    /// The file, for `--lease-keys`.
    pub path: PathBuf,
    /// The parsed keys.
    pub keys: LeaseKeys,
}

impl Keys {
    /// Writes `{"signing": signing, "keys": {kid: secret…}}` as `dir/name` (secrets given as
    /// one repeated hex byte, e.g. `"a1"` → 32 bytes of 0xa1).
    pub fn write(dir: &Path, name: &str, signing: &str, keys: &[(&str, &str)]) -> Keys {
        let map: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|(kid, byte)| (kid.to_string(), byte.repeat(32).into()))
            .collect();
        let text = serde_json::json!({"signing": signing, "keys": map}).to_string();
        let path = dir.join(name);
        std::fs::write(&path, &text).unwrap();
        Keys {
            path,
            keys: LeaseKeys::from_json(text.as_bytes()).unwrap(),
        }
    }

    /// A lease for `image` (at `version`) that lives five minutes from now.
    pub fn mint(&self, image: &str, version: Option<&str>) -> String {
        self.mint_at(image, version, SystemTime::now())
    }

    /// A lease minted at `at` for one minute (an `at` in the past gives an expired lease).
    pub fn mint_at(&self, image: &str, version: Option<&str>, at: SystemTime) -> String {
        let ttl = Duration::from_secs(if at < SystemTime::now() { 60 } else { 300 });
        self.keys.mint(image, version, ttl, at).unwrap().token
    }

    /// The path as a flag value.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

/// `token` with one character of its claims changed (the signature no longer matches).
pub fn tampered(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let claims = &mut parts[2];
    let first = if claims.starts_with('e') { "f" } else { "e" };
    claims.replace_range(0..1, first);
    parts.join(".")
}
