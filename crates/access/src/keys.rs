//! The lease-key file: `{"signing": "KID", "keys": {"KID": "HEX SECRET", …}}`. The key named by
//! `signing` signs new leases; every key in `keys` verifies, so a key that is rotated out of
//! `signing` keeps its live leases working until they expire, and a key removed from `keys`
//! ends them at once.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The shortest secret accepted: 32 bytes (256 bits, HMAC-SHA256's block of security).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest key id.
pub const MAX_KID_LEN: usize = 64;

/// Why a key file was refused. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("reading the lease-key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("lease-key file{at}: {message} (expected {{\"signing\": \"KID\", \"keys\": {{\"KID\": \"HEX SECRET\"}}}})")]
    Json {
        /// ` PATH` when known.
        at: String,
        /// The parser's message (it quotes no values).
        message: String,
    },
    /// A key id with characters outside `A-Z a-z 0-9 _ -`, empty or too long.
    #[error("lease-key file{at}: key id \"{kid}\" must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    BadKid {
        /// ` PATH` when known.
        at: String,
        /// The key id (ids are not secret).
        kid: String,
    },
    /// `keys` is empty.
    #[error("lease-key file{at}: \"keys\" holds no key")]
    NoKeys {
        /// ` PATH` when known.
        at: String,
    },
    /// `signing` names no key of `keys`.
    #[error("lease-key file{at}: the signing key id \"{kid}\" is not in \"keys\"")]
    UnknownSigning {
        /// ` PATH` when known.
        at: String,
        /// The signing key id.
        kid: String,
    },
    /// A secret that is not hexadecimal.
    #[error("lease-key file{at}: the secret of key \"{kid}\" is not hexadecimal")]
    NotHex {
        /// ` PATH` when known.
        at: String,
        /// The key id.
        kid: String,
    },
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    #[error("lease-key file{at}: the secret of key \"{kid}\" has {bytes} bytes; at least 32 (64 hex digits) are needed")]
    ShortSecret {
        /// ` PATH` when known.
        at: String,
        /// The key id.
        kid: String,
        /// Its length in bytes.
        bytes: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    signing: String,
    keys: BTreeMap<String, String>,
}

/// A secret key: its bytes never appear in `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Whether `kid` is a valid key id.
pub fn kid_ok(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The lease keys: which one signs, and every one that verifies.
#[derive(Debug, Clone)]
pub struct LeaseKeys {
    signing: String,
    keys: BTreeMap<String, Secret>,
}

impl LeaseKeys {
    /// Reads and checks the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &format!(" {}", path.display()))
    }

    /// Checks a key file's contents.
    pub fn from_json(text: &[u8]) -> Result<Self, KeyFileError> {
        Self::parse(text, "")
    }

    fn parse(text: &[u8], at: &str) -> Result<Self, KeyFileError> {
        let at = at.to_string();
        let file: KeyFile = serde_json::from_slice(text).map_err(|e| KeyFileError::Json {
            at: at.clone(),
            // serde_json's messages name types and positions, never the values.
            message: e.to_string(),
        })?;
        if file.keys.is_empty() {
            return Err(KeyFileError::NoKeys { at });
        }
        let mut keys = BTreeMap::new();
        for (kid, hex_secret) in file.keys {
            if !kid_ok(&kid) {
                return Err(KeyFileError::BadKid { at, kid });
            }
            let Ok(secret) = hex::decode(hex_secret.trim()) else {
                return Err(KeyFileError::NotHex { at, kid });
            };
            if secret.len() < MIN_SECRET_BYTES {
                let bytes = secret.len();
                return Err(KeyFileError::ShortSecret { at, kid, bytes });
            }
            keys.insert(kid, Secret(secret));
        }
        if !keys.contains_key(&file.signing) {
            return Err(KeyFileError::UnknownSigning {
                at,
                kid: file.signing,
            });
        }
        Ok(LeaseKeys {
            signing: file.signing,
            keys,
        })
    }

    /// The id of the key that signs new leases.
    pub fn signing_kid(&self) -> &str {
        &self.signing
    }

    /// The ids of every key that verifies.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The secret of `kid`.
    pub(crate) fn secret(&self, kid: &str) -> Option<&Secret> {
        self.keys.get(kid)
    }

    /// The signing key id and its secret.
    pub(crate) fn signing(&self) -> (&str, &Secret) {
        (&self.signing, &self.keys[&self.signing])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn parse(text: &str) -> Result<LeaseKeys, String> {
        LeaseKeys::from_json(text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_a_good_file_and_refuses_each_fault_by_name() {
        let k = parse(&format!(
            r#"{{"signing":"k2","keys":{{"k1":"{A}","k2":"{A}"}}}}"#
        ))
        .unwrap();
        assert_eq!(k.signing_kid(), "k2");
        assert_eq!(k.kids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert!(!format!("{k:?}").contains("0011"), "Debug shows no secret");

        let cases = [
            (
                format!(r#"{{"signing":"k9","keys":{{"k1":"{A}"}}}}"#),
                "signing key id \"k9\" is not in",
            ),
            (
                r#"{"signing":"k1","keys":{"k1":"zz"}}"#.to_string(),
                "key \"k1\" is not hexadecimal",
            ),
            (
                r#"{"signing":"k1","keys":{"k1":"0011"}}"#.to_string(),
                "has 2 bytes; at least 32",
            ),
            (r#"{"signing":"k1","keys":{}}"#.to_string(), "holds no key"),
            (
                format!(r#"{{"signing":"a.b","keys":{{"a.b":"{A}"}}}}"#),
                "key id \"a.b\" must be",
            ),
            (r#"{"signing":"k1"}"#.to_string(), "missing field `keys`"),
            (
                r#"{"signing":"k1","keys":{},"extra":1}"#.to_string(),
                "unknown field `extra`",
            ),
            ("not json".to_string(), "expected {\"signing\""),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{text} → {err}");
            assert!(!err.contains("0011"), "{err} quotes a secret");
        }
    }

    #[test]
    fn load_names_the_file() {
        let err = LeaseKeys::load(Path::new("/nonexistent/keys.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/keys.json"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, r#"{"signing":"k1","keys":{"k1":"ab"}}"#).unwrap();
        let err = LeaseKeys::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("1 bytes"),
            "{err}"
        );
    }
}
