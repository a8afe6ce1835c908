//! `Range` header parsing and resolution (SPEC 3.5).

/// Longest accepted `Range` header.
pub const MAX_HEADER_LEN: usize = 8192;
/// Most range specs accepted in one header.
pub const MAX_SPECS: usize = 1000;

/// One range spec as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `a-b`.
    Closed(u64, u64),
    /// `a-`.
    From(u64),
    /// `-n`.
    Suffix(u64),
}

/// Why a header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Longer than [`MAX_HEADER_LEN`].
    HeaderTooLarge,
    /// More than [`MAX_SPECS`] specs.
    TooManyRanges,
    /// Not `bytes`.
    UnsupportedUnit,
    /// Malformed.
    Syntax,
}

/// Parses a `Range` header value. `Ok(None)` when it is not visible ASCII (treated as absent).
pub fn parse(raw: &[u8]) -> Result<Option<Vec<Spec>>, RangeError> {
    if !raw.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t') {
        return Ok(None);
    }
    if raw.len() > MAX_HEADER_LEN {
        return Err(RangeError::HeaderTooLarge);
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| RangeError::Syntax)?
        .trim();
    let (unit, list) = text.split_once('=').ok_or(RangeError::Syntax)?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Err(RangeError::UnsupportedUnit);
    }
    let mut specs = Vec::new();
    for (i, part) in list.split(',').enumerate() {
        if i >= MAX_SPECS {
            return Err(RangeError::TooManyRanges);
        }
        let part = part.trim();
        if part.is_empty() {
            return Err(RangeError::Syntax);
        }
        let (a, b) = part.split_once('-').ok_or(RangeError::Syntax)?;
        let (a, b) = (a.trim(), b.trim());
        let spec = match (a.is_empty(), b.is_empty()) {
            (true, true) => return Err(RangeError::Syntax),
            (true, false) => {
                let n = number(b)?;
                if n == 0 {
                    return Err(RangeError::Syntax);
                }
                Spec::Suffix(n)
            }
            (false, true) => Spec::From(number(a)?),
            (false, false) => {
                let (a, b) = (number(a)?, number(b)?);
                if b < a {
                    return Err(RangeError::Syntax);
                }
                Spec::Closed(a, b)
            }
        };
        specs.push(spec);
    }
    Ok(Some(specs))
}

fn number(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Syntax);
    }
    s.parse::<u64>().map_err(|_| RangeError::Syntax)
}

/// Resolves one spec against a length: the inclusive `(start, end)` or `None` if unsatisfiable.
pub fn resolve(spec: Spec, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    match spec {
        Spec::Closed(a, b) => (a < len).then(|| (a, b.min(len - 1))),
        Spec::From(a) => (a < len).then_some((a, len - 1)),
        Spec::Suffix(n) => Some((len - n.min(len), len - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        assert_eq!(
            parse(b"bytes=0-9").unwrap().unwrap(),
            vec![Spec::Closed(0, 9)]
        );
        assert_eq!(
            parse(b" Bytes = 5- , -3 ").unwrap().unwrap(),
            vec![Spec::From(5), Spec::Suffix(3)]
        );
        assert_eq!(parse(b"bytes=-0"), Err(RangeError::Syntax));
        assert_eq!(parse(b"bytes=5-1"), Err(RangeError::Syntax));
        assert_eq!(parse(b"bytes=1-2,"), Err(RangeError::Syntax));
        assert_eq!(parse(b"bytes=-"), Err(RangeError::Syntax));
        assert_eq!(parse(b"items=0-1"), Err(RangeError::UnsupportedUnit));
        assert_eq!(
            parse(b"bytes=99999999999999999999999-"),
            Err(RangeError::Syntax)
        );
        assert_eq!(
            parse(b"bytes=000000000000000000000000001-2")
                .unwrap()
                .unwrap(),
            vec![Spec::Closed(1, 2)]
        );
        let many = format!("bytes={}", vec!["0-1"; 1001].join(","));
        assert_eq!(parse(many.as_bytes()), Err(RangeError::TooManyRanges));
        let long = format!("bytes=0-{}", "1".repeat(9000));
        assert_eq!(parse(long.as_bytes()), Err(RangeError::HeaderTooLarge));
        assert_eq!(parse(b"bytes=0-1\xff"), Ok(None));
    }

    #[test]
    fn resolves_against_lengths() {
        assert_eq!(resolve(Spec::Closed(0, 99), 10), Some((0, 9)));
        assert_eq!(resolve(Spec::Closed(10, 20), 10), None);
        assert_eq!(resolve(Spec::From(3), 10), Some((3, 9)));
        assert_eq!(resolve(Spec::Suffix(30), 10), Some((0, 9)));
        assert_eq!(resolve(Spec::Suffix(3), 10), Some((7, 9)));
        assert_eq!(resolve(Spec::From(0), 0), None);
        let big = 6u64 << 30;
        assert_eq!(resolve(Spec::Suffix(1), big), Some((big - 1, big - 1)));
    }
}
