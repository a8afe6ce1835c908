//! Where a lease travels in an HTTP request: `Authorization: Bearer`, else the `lease` query
//! parameter (percent-decoded, so relative chunk URLs keep it), else the `aero_lease` cookie.
//! `serve` and the gateway take leases the same way.

use crate::lease::{LEASE_COOKIE, LEASE_QUERY};
use http::{header, HeaderMap, Uri};
use percent_encoding::percent_decode_str;

/// The bearer token of `headers`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
}

/// The `lease` query parameter of `uri`, if any.
pub fn query(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix(LEASE_QUERY)?.strip_prefix('=')?;
        Some(percent_decode_str(value).decode_utf8().ok()?.into_owned())
    })
}

/// The lease cookie among the `Cookie` headers of `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == LEASE_COOKIE).then(|| value.trim_matches('"').to_string())
        })
}

/// The lease a request carries: bearer token, else query parameter, else cookie.
pub fn presented(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    bearer(headers)
        .or_else(|| query(uri))
        .or_else(|| cookie(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        presented(&h, &uri.parse().unwrap())
    }

    #[test]
    fn the_lease_comes_from_the_header_then_the_query_then_the_cookie() {
        let base = "/v1/images/a?x=1&lease=Q%2e1";
        assert_eq!(
            parts(base, &[("authorization", "Bearer  H.1 ")]),
            Some("H.1".into())
        );
        assert_eq!(
            parts(base, &[("cookie", "aero_lease=C.1")]),
            Some("Q.1".into())
        );
        let no_query = "/v1/images/a?leases=x";
        assert_eq!(
            parts(no_query, &[("cookie", "a=b; aero_lease=\"C.1\"; c=d")]),
            Some("C.1".into())
        );
        assert_eq!(parts(no_query, &[("authorization", "Basic eA==")]), None);
        assert_eq!(parts(no_query, &[]), None);
    }
}
