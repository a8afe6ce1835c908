//! CORS, CORP and Vary (SPEC 3.8).

use super::settings::{normalize_origin, CorsMode};
use axum::http::{header, HeaderMap, HeaderValue};

/// Which expose list a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Bytes, chunked and `/metrics`: full expose list, CORP.
    Data,
    /// `/v1/images` and `/meta`: short expose list, no CORP.
    Meta,
    /// Health, readiness, version: no expose list, no CORP.
    Health,
}

const DATA_EXPOSE: &str =
    "ETag, Last-Modified, Cache-Control, Content-Range, Accept-Ranges, Content-Length, Content-Encoding";
const META_EXPOSE: &str = "ETag, Last-Modified, Cache-Control";
const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
const ALLOW_HEADERS: &str =
    "Range, If-Range, If-None-Match, If-Modified-Since, Authorization, Content-Type";

/// The CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    mode: CorsMode,
    corp: HeaderValue,
    max_age: HeaderValue,
}

impl Cors {
    /// A policy from the settings.
    pub fn new(mode: CorsMode, corp: &str, max_age: u64) -> Self {
        Cors {
            mode,
            corp: HeaderValue::from_str(corp).unwrap_or(HeaderValue::from_static("same-site")),
            max_age: HeaderValue::from(max_age),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request, or `None` when not allowed.
    fn allow_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        match &self.mode {
            CorsMode::Wildcard => Some(HeaderValue::from_static("*")),
            CorsMode::Allowlist(list) => {
                let origin = request.get(header::ORIGIN)?;
                let text = origin.to_str().ok()?;
                list.contains(&normalize_origin(text))
                    .then(|| origin.clone())
            }
        }
    }

    fn allowlist(&self) -> bool {
        matches!(self.mode, CorsMode::Allowlist(_))
    }

    /// Adds the headers of an actual (non-preflight) response.
    pub fn apply(&self, request: &HeaderMap, out: &mut HeaderMap, kind: RouteKind) {
        if kind == RouteKind::Data {
            out.insert("cross-origin-resource-policy", self.corp.clone());
        }
        if self.allowlist() {
            merge_vary(out, &["Origin"]);
        }
        let Some(acao) = self.allow_origin(request) else {
            return;
        };
        let wildcard = acao == "*";
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, acao);
        if !wildcard {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        match kind {
            RouteKind::Data => {
                out.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(DATA_EXPOSE),
                );
            }
            RouteKind::Meta => {
                out.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(META_EXPOSE),
                );
            }
            RouteKind::Health => {}
        }
    }

    /// Adds the headers of a preflight response.
    pub fn preflight(&self, request: &HeaderMap, out: &mut HeaderMap, kind: RouteKind) {
        if kind == RouteKind::Data {
            out.insert("cross-origin-resource-policy", self.corp.clone());
        }
        if self.allowlist() {
            merge_vary(
                out,
                &[
                    "Origin",
                    "Access-Control-Request-Method",
                    "Access-Control-Request-Headers",
                ],
            );
        } else {
            merge_vary(
                out,
                &[
                    "Access-Control-Request-Method",
                    "Access-Control-Request-Headers",
                ],
            );
        }
        let Some(acao) = self.allow_origin(request) else {
            return;
        };
        if acao != "*" {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, acao);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

/// Merges `tokens` into `Vary` (case-insensitive, one header, `*` kept alone).
pub fn merge_vary(out: &mut HeaderMap, tokens: &[&str]) {
    let mut all: Vec<String> = Vec::new();
    for v in out.get_all(header::VARY) {
        if let Ok(s) = v.to_str() {
            for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                all.push(t.to_string());
            }
        }
    }
    if all.iter().any(|t| t == "*") {
        out.insert(header::VARY, HeaderValue::from_static("*"));
        return;
    }
    for t in tokens {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(t)) {
            all.push(t.to_string());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&all.join(", ")) {
        out.insert(header::VARY, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_echoes_the_original_origin() {
        let cors = Cors::new(
            CorsMode::Allowlist(vec!["https://a.example".into()]),
            "cross-origin",
            60,
        );
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://A.example/"),
        );
        let mut out = HeaderMap::new();
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        cors.apply(&req, &mut out, RouteKind::Data);
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://A.example/"
        );
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[header::VARY], "accept-encoding, Origin");
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let mut out = HeaderMap::new();
        cors.apply(&req, &mut out, RouteKind::Data);
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(out.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
    }
}
