//! Path-segment limits and decoding (SPEC 3.3); the id and chunk-name rules are
//! `aero_chunked::layout`'s.

/// Longest raw (percent-encoded) id or version segment.
pub const MAX_RAW_ID: usize = 128 * 3;
/// Longest raw chunk-name segment.
pub const MAX_RAW_CHUNK: usize = 36 * 3;

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
    fn decodes_segments() {
        assert_eq!(decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(decode("..%2Fx").as_deref(), Some("../x"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None);
    }
}
