//! Identifier validation and path-segment decoding (SPEC 3.3).

use anyhow::{bail, Result};

/// Longest raw (percent-encoded) id or version segment.
pub const MAX_RAW_ID: usize = 128 * 3;
/// Longest raw chunk-name segment.
pub const MAX_RAW_CHUNK: usize = 36 * 3;

/// Image ids and versions: 1..=128 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn id_ok(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value != "."
        && value != ".."
}

/// [`id_ok`] with a message.
pub fn validate_id(what: &str, value: &str) -> Result<()> {
    if !id_ok(value) {
        bail!("invalid {what} \"{}\"", super::errors::bounded(value, 128));
    }
    Ok(())
}

/// Chunk names: `^[0-9]{1,32}\.bin$`.
pub fn chunk_name_ok(name: &str) -> bool {
    name.strip_suffix(".bin")
        .is_some_and(|d| (1..=32).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Percent-decodes a path segment; `None` when malformed or not UTF-8.
pub fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(id_ok("win7") && id_ok("a..b") && id_ok("sha256-abc"));
        for bad in ["", ".", "..", "a/b", "a\\b", "é", &"x".repeat(129)] {
            assert!(!id_ok(bad), "{bad}");
        }
        assert!(chunk_name_ok("00000001.bin") && chunk_name_ok("0.bin"));
        for bad in [
            ".bin",
            "1.bin.bin",
            "../1.bin",
            "a.bin",
            &format!("{}.bin", "1".repeat(33)),
        ] {
            assert!(!chunk_name_ok(bad), "{bad}");
        }
        assert_eq!(decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(decode("..%2Fx").as_deref(), Some("../x"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None);
    }
}
