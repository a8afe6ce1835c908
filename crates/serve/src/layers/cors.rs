//! CORS, CORP and Vary (SPEC 3.8): the policy, and the layer that puts a route's headers on
//! every response of that route (errors included) and completes preflight answers.

use crate::settings::{normalize_origin, CorsMode};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::middleware::Next;
use std::sync::Arc;

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

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, or `None` when not allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.mode {
            CorsMode::Wildcard => Some(HeaderValue::from_static("*")),
            CorsMode::Allowlist(list) => {
                let origin = origin?;
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
    pub fn apply(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap, kind: RouteKind) {
        if kind == RouteKind::Data {
            out.insert("cross-origin-resource-policy", self.corp.clone());
        }
        if self.allowlist() {
            merge_vary(out, &["Origin"]);
        }
        let Some(acao) = self.allow_origin(origin) else {
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
    pub fn preflight(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap, kind: RouteKind) {
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
        let Some(acao) = self.allow_origin(origin) else {
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

/// Marks the answer to a preflight, so the CORS layer adds the preflight headers.
#[derive(Clone, Copy)]
struct Preflight;

/// The answer to a preflight (`OPTIONS`): 204, empty; the CORS layer completes it.
pub fn preflight_answer() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.extensions_mut().insert(Preflight);
    resp
}

/// The CORS layer of routes of `kind`: the route's headers on every response, the preflight
/// headers on preflight answers.
pub async fn layer(
    State((cors, kind)): State<(Arc<Cors>, RouteKind)>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = next.run(req).await;
    if resp.extensions().get::<Preflight>().is_some() {
        cors.preflight(origin.as_ref(), resp.headers_mut(), kind);
    } else {
        cors.apply(origin.as_ref(), resp.headers_mut(), kind);
    }
    resp
}

/// Merges `tokens` into `Vary` (case-insensitive, one header, `*` kept alone).
fn merge_vary(out: &mut HeaderMap, tokens: &[&str]) {
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
        let origin = HeaderValue::from_static("https://A.example/");
        let mut out = HeaderMap::new();
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        cors.apply(Some(&origin), &mut out, RouteKind::Data);
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://A.example/"
        );
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[header::VARY], "accept-encoding, Origin");
        let evil = HeaderValue::from_static("https://evil.example");
        let mut out = HeaderMap::new();
        cors.apply(Some(&evil), &mut out, RouteKind::Data);
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(out.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
        assert_eq!(out["cross-origin-resource-policy"], "cross-origin");
    }

    #[test]
    fn preflights_vary_on_the_request_headers_and_allow_the_methods() {
        let cors = Cors::new(CorsMode::Wildcard, "same-site", 86400);
        let mut out = HeaderMap::new();
        cors.preflight(None, &mut out, RouteKind::Meta);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD, OPTIONS"
        );
        assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(
            out[header::VARY],
            "Access-Control-Request-Method, Access-Control-Request-Headers"
        );
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(out.get("cross-origin-resource-policy").is_none());
        let mut out = HeaderMap::new();
        out.insert(header::VARY, HeaderValue::from_static("*"));
        cors.apply(None, &mut out, RouteKind::Health);
        assert_eq!(out[header::VARY], "*");
        assert!(out.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
    }
}
