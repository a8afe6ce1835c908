//! The server's request-header parsers: `Range`, and the conditionals (`If-None-Match`,
//! `If-Modified-Since`, `If-Range`). Each input is used twice: as raw header bytes (nothing may
//! panic, and what is accepted must make sense), and as a recipe for a well-formed header whose
//! meaning a simple reference knows, which the parser must agree with.

use aero_serve::fuzzing::{
    conditionals, parse_range, resolve_range, RangeError, Spec, MAX_HEADER_LEN, MAX_SPECS,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reads fuzz bytes as a recipe; zeros once they run out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    /// A number of the sizes that matter: tiny, around a small resource, or anything.
    fn number(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => u64::from(self.byte() % 20),
            1 => u64::from(self.byte()),
            2 => self.u64() >> (self.byte() % 64),
            _ => self.u64(),
        }
    }

    /// Optional whitespace: nothing, a space or a tab.
    fn ows(&mut self) -> &'static str {
        ["", "", " ", "\t"][usize::from(self.byte() % 4)]
    }
}

/// Resource lengths each accepted range is resolved against.
fn lengths(data: &[u8]) -> Vec<u64> {
    let mut lens: Vec<u64> = (0..=17).collect();
    lens.extend([512, 6 << 30, u64::MAX - 1, u64::MAX]);
    lens.push(Recipe(data).u64());
    lens
}

/// `Range`: raw bytes never panic, an accepted header respects the caps and prints back to
/// itself, every accepted range lies inside the resource and matches a brute-force reference
/// on small resources; a generated well-formed header parses to the specs it was made from.
pub fn check_range(data: &[u8]) {
    match parse_range(data) {
        Ok(Some(specs)) => {
            assert!(data.len() <= MAX_HEADER_LEN, "a header over the length cap");
            check_specs(&specs, &lengths(data));
        }
        Ok(None) => assert!(
            data.iter()
                .any(|&b| !(0x20..0x7f).contains(&b) && b != b'\t'),
            "a visible header treated as absent"
        ),
        Err(RangeError::HeaderTooLarge) => assert!(data.len() > MAX_HEADER_LEN),
        Err(_) => {}
    }
    let (header, expected) = well_formed_range(&mut Recipe(data));
    assert_eq!(
        parse_range(header.as_bytes()),
        Ok(Some(expected.clone())),
        "the well-formed header {header:?}"
    );
    check_specs(&expected, &lengths(data));
}

/// A well-formed `Range` header with spaces, tabs, case and leading zeros where the grammar
/// allows them, and the specs it means.
fn well_formed_range(r: &mut Recipe) -> (String, Vec<Spec>) {
    let unit = ["bytes", "BYTES", "Bytes"][usize::from(r.byte() % 3)];
    let mut header = format!("{}{unit}{}={}", r.ows(), r.ows(), r.ows());
    let count = 1 + usize::from(r.byte() % 8);
    let mut specs = Vec::new();
    for i in 0..count {
        if i > 0 {
            header += &format!("{},{}", r.ows(), r.ows());
        }
        let zeros = "0".repeat(usize::from(r.byte() % 3));
        let spec = match r.byte() % 3 {
            0 => {
                let (a, b) = (r.number(), r.number());
                let (a, b) = (a.min(b), a.max(b));
                header += &format!("{zeros}{a}{}-{}{b}", r.ows(), r.ows());
                Spec::Closed(a, b)
            }
            1 => {
                let a = r.number();
                header += &format!("{zeros}{a}{}-", r.ows());
                Spec::From(a)
            }
            _ => {
                let n = r.number().max(1);
                header += &format!("-{}{zeros}{n}", r.ows());
                Spec::Suffix(n)
            }
        };
        specs.push(spec);
    }
    header += r.ows();
    (header, specs)
}

fn check_specs(specs: &[Spec], lens: &[u64]) {
    assert!(
        (1..=MAX_SPECS).contains(&specs.len()),
        "{} specs",
        specs.len()
    );
    let printed: Vec<String> = specs
        .iter()
        .map(|s| match *s {
            Spec::Closed(a, b) => format!("{a}-{b}"),
            Spec::From(a) => format!("{a}-"),
            Spec::Suffix(n) => format!("-{n}"),
        })
        .collect();
    let canonical = format!("bytes={}", printed.join(","));
    if canonical.len() <= MAX_HEADER_LEN {
        assert_eq!(
            parse_range(canonical.as_bytes()),
            Ok(Some(specs.to_vec())),
            "{canonical}"
        );
    }
    for &spec in specs {
        match spec {
            Spec::Closed(a, b) => assert!(a <= b, "{spec:?}"),
            Spec::Suffix(n) => assert!(n > 0, "{spec:?}"),
            Spec::From(_) => {}
        }
        for &len in lens {
            check_resolution(spec, len);
        }
    }
}

/// An accepted range lies inside the resource; on small resources it is exactly the bytes a
/// brute-force reading of the spec selects (none: unsatisfiable).
fn check_resolution(spec: Spec, len: u64) {
    let resolved = resolve_range(spec, len);
    if let Some((start, end)) = resolved {
        assert!(
            start <= end && end < len,
            "{spec:?} on {len} bytes: {start}-{end}"
        );
        if let Spec::Suffix(n) = spec {
            assert_eq!(end - start + 1, n.min(len), "{spec:?} on {len} bytes");
        }
    }
    if len <= 17 {
        let selected: Vec<u64> = (0..len)
            .filter(|&i| match spec {
                Spec::Closed(a, b) => a <= i && i <= b,
                Spec::From(a) => i >= a,
                Spec::Suffix(n) => len - i <= n,
            })
            .collect();
        let reference = selected.first().zip(selected.last()).map(|(&s, &e)| (s, e));
        assert_eq!(resolved, reference, "{spec:?} on {len} bytes");
    }
}

/// The resource's entity tag in the generated cases.
const ETAG: &str = "\"v1-abc\"";
/// The last second an HTTP date can name: 9999-12-31T23:59:59Z.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// Conditionals: raw header values never panic and the validators are always sent back as
/// given (Last-Modified capped at year 9999, in whole seconds); generated `If-None-Match`,
/// `If-Modified-Since` and `If-Range` headers decide as RFC 9110 says (weak comparison for
/// If-None-Match, strong for If-Range, dates compared in whole seconds).
pub fn check_conditionals(data: &[u8]) {
    let mut r = Recipe(data);
    let flags = r.byte();
    let weak = flags & 1 != 0;
    let etag = if weak {
        format!("W/{ETAG}")
    } else {
        ETAG.to_string()
    };
    // Up to about 35,000 years: past 9999, where HTTP dates end.
    let secs = r.u64() % (1 << 40);
    let modified = (flags & 2 != 0).then(|| UNIX_EPOCH + Duration::from_secs(secs));

    // Raw values, split on newlines, in turn for each header.
    let names = ["if-none-match", "if-modified-since", "if-range"];
    let rest = r.0;
    let raw: Vec<(&str, &[u8])> = rest
        .split(|&b| b == b'\n')
        .zip(names.iter().cycle())
        .map(|(value, &name)| (name, value))
        .collect();
    let c = conditionals(&raw, &etag, modified);
    check_validators(&c, &etag, modified);
    // A visible If-None-Match list whose quotes only delimit whole tags, and which names the
    // resource's tag or `*`, matches.
    if let Some(text) = raw
        .iter()
        .find(|(n, _)| *n == "if-none-match")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .filter(|t| t.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t'))
    {
        let tags: Vec<&str> = text.split(',').map(str::trim).collect();
        let simple = tags.iter().all(|t| {
            let t = t
                .strip_prefix("W/")
                .or_else(|| t.strip_prefix("w/"))
                .unwrap_or(t);
            let quotes = t.matches('"').count();
            quotes == 0 || (quotes == 2 && t.len() >= 2 && t.starts_with('"') && t.ends_with('"'))
        });
        if simple
            && tags
                .iter()
                .any(|&t| t == "*" || t == ETAG || t == format!("W/{ETAG}"))
        {
            assert!(
                c.not_modified,
                "If-None-Match {text:?} does not match {etag}"
            );
        }
    }

    let mut request: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut expect_not_modified = false;
    let inm = r.byte() % 3;
    if inm > 0 {
        let tags = generated_tags(&mut r);
        expect_not_modified = tags.iter().any(|&(_, matches)| matches);
        let list: Vec<&str> = tags.iter().map(|&(t, _)| t).collect();
        request.push(("if-none-match", list.join(", ").into_bytes()));
    }
    let delta = i64::from(r.byte() as i8);
    if r.byte() % 2 == 0 {
        let date = shifted(secs, delta);
        request.push((
            "if-modified-since",
            httpdate::fmt_http_date(date).into_bytes(),
        ));
        if inm == 0 {
            expect_not_modified = modified.is_some() && secs <= capped(date);
        }
    }
    let (if_range, expect_if_range) = match r.byte() % 5 {
        0 => (None, true),
        1 => (Some(ETAG.to_string()), !weak),
        2 => (Some(format!("W/{ETAG}")), false),
        3 => (Some("\"other\"".to_string()), false),
        _ => {
            let date = shifted(secs, delta);
            let fits = modified.is_some() && secs <= capped(date);
            (Some(httpdate::fmt_http_date(date)), fits)
        }
    };
    if let Some(value) = if_range {
        request.push(("if-range", value.into_bytes()));
    }
    let pairs: Vec<(&str, &[u8])> = request.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let c = conditionals(&pairs, &etag, modified);
    check_validators(&c, &etag, modified);
    assert_eq!(
        c.not_modified, expect_not_modified,
        "not modified: {request:?} against {etag} {secs}"
    );
    assert_eq!(
        c.if_range, expect_if_range,
        "If-Range: {request:?} against {etag} {secs}"
    );
}

/// Entity tags for an `If-None-Match` list, each with whether it matches the resource's tag
/// (weak comparison: `W/` ignored; `*` matches anything).
fn generated_tags(r: &mut Recipe) -> Vec<(&'static str, bool)> {
    (0..1 + r.byte() % 4)
        .map(|_| match r.byte() % 5 {
            0 => (ETAG, true),
            1 => ("W/\"v1-abc\"", true),
            2 => ("*", true),
            3 => ("\"v1-abd\"", false),
            _ => ("\"v1,abc\"", false),
        })
        .collect()
}

/// A date `delta` seconds from `secs`, within the range the HTTP-date formatter can write.
fn shifted(secs: u64, delta: i64) -> SystemTime {
    let at = secs.saturating_add_signed(delta).min(LAST_HTTP_DATE_SECS);
    UNIX_EPOCH + Duration::from_secs(at)
}

fn capped(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `ETag` is sent as given, `Last-Modified` is the modification time in whole seconds,
/// capped at the last second of year 9999.
fn check_validators(
    c: &aero_serve::fuzzing::Conditionals,
    etag: &str,
    modified: Option<SystemTime>,
) {
    assert_eq!(c.etag.as_deref(), Some(etag));
    let sent = c.last_modified.as_deref().map(|d| {
        httpdate::parse_http_date(d).unwrap_or_else(|e| panic!("Last-Modified {d:?}: {e}"))
    });
    let expected =
        modified.map(|t| UNIX_EPOCH + Duration::from_secs(capped(t).min(LAST_HTTP_DATE_SECS)));
    assert_eq!(sent, expected, "Last-Modified");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thousand recipes of a simple generator: the generated headers and requests meet
    /// the references (the fuzzer explores further; this keeps the references honest on stable).
    #[test]
    fn generated_headers_meet_the_references() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..1000 {
            let data: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            check_range(&data);
            check_conditionals(&data);
        }
    }

    #[test]
    fn the_reference_reads_specs_byte_by_byte() {
        check_resolution(Spec::Suffix(3), 10);
        check_resolution(Spec::Closed(5, 100), 7);
        assert_eq!(resolve_range(Spec::Closed(5, 100), 7), Some((5, 6)));
        assert_eq!(resolve_range(Spec::From(7), 7), None);
    }
}
