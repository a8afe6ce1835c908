//! Metadata API (SPEC 3.10), health, readiness, version (3.11) and metrics (3.12).

use super::bytes::respond;
use super::conditional::{none_match, not_modified, put_validators};
use super::cors::RouteKind;
use super::ids::{decode, MAX_RAW_ID};
use super::images::{Image, StoreError};
use super::state::{method_not_allowed, segments, Shared};
use aero_chunked::layout::id_ok;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

fn json(
    status: StatusCode,
    value: &serde_json::Value,
    mut headers: HeaderMap,
    head: bool,
) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    respond(
        status,
        headers,
        if head {
            Body::empty()
        } else {
            Body::from(bytes)
        },
    )
}

fn image_json(img: &Image) -> serde_json::Value {
    let last_modified = img
        .validators
        .last_modified
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let mut v = serde_json::json!({
        "id": img.id,
        "name": img.name,
        "size_bytes": img.size,
        "etag": img.validators.etag,
        "last_modified": last_modified,
        "content_type": "application/octet-stream",
        "public": img.public,
    });
    if let Some(d) = &img.description {
        v["description"] = d.clone().into();
    }
    if let Some(c) = img.recommended_chunk_size_bytes {
        v["recommended_chunk_size_bytes"] = c.into();
    }
    if let aero_chunked::read::Origin::Chunked(m) = &img.source {
        v["chunked"] = serde_json::json!({
            "version": m.manifest.version,
            "chunk_size": m.manifest.chunk_size,
            "chunk_count": m.manifest.chunk_count,
        });
    }
    v
}

fn list_etag(images: &[Image]) -> String {
    let mut sorted: Vec<&Image> = images.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = Sha256::new();
    for img in sorted {
        h.update(img.id.as_bytes());
        h.update([0]);
        h.update(img.validators.etag.as_bytes());
        h.update([0]);
        h.update(img.size.to_le_bytes());
        if let Some(d) = img
            .validators
            .last_modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        {
            h.update(d.as_nanos().to_le_bytes());
        }
        h.update([0]);
    }
    format!("\"images-{}\"", hex::encode(&h.finalize()[..16]))
}

fn meta_fail(st: &Shared, h: &HeaderMap, e: StoreError) -> Response<Body> {
    st.store_fail(h, RouteKind::Meta, e, false)
}

/// `/v1/images`.
pub async fn list(State(st): State<Shared>, req: Request) -> Response<Body> {
    let h = req.headers();
    let kind = RouteKind::Meta;
    match *req.method() {
        Method::OPTIONS => return st.preflight(h, kind),
        Method::GET | Method::HEAD => {}
        _ => return method_not_allowed(&st, h, kind),
    }
    let images = match st.store.list().await {
        Ok(i) => i,
        Err(e) => return meta_fail(&st, h, e),
    };
    let etag = list_etag(&images);
    let mut headers = HeaderMap::new();
    st.cors.apply(h, &mut headers, kind);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let inm = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| none_match(v, &etag)) {
        return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    let body = serde_json::Value::Array(images.iter().map(image_json).collect());
    json(
        StatusCode::OK,
        &body,
        headers,
        *req.method() == Method::HEAD,
    )
}

/// `/v1/images/:id/meta`.
pub async fn meta(State(st): State<Shared>, req: Request) -> Response<Body> {
    let h = req.headers();
    let kind = RouteKind::Meta;
    let raw = segments(req.uri().path())
        .get(2)
        .copied()
        .unwrap_or("")
        .to_string();
    if raw.len() > MAX_RAW_ID {
        let mut r = st.fail(
            h,
            kind,
            StatusCode::BAD_REQUEST,
            "bad request: image id too long",
            false,
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return r;
    }
    let Some(id) = decode(&raw).filter(|i| id_ok(i)) else {
        let shown = super::errors::bounded(&raw, 128);
        return st.fail(
            h,
            kind,
            StatusCode::BAD_REQUEST,
            &format!("bad request: invalid image id: \"{shown}\""),
            false,
        );
    };
    match *req.method() {
        Method::OPTIONS => return st.preflight(h, kind),
        Method::GET | Method::HEAD => {}
        _ => return method_not_allowed(&st, h, kind),
    }
    let img = match st.store.image(&id).await {
        Ok(i) => i,
        Err(StoreError::NotFound) => {
            return st.fail(h, kind, StatusCode::NOT_FOUND, "image not found", false)
        }
        Err(e) => return meta_fail(&st, h, e),
    };
    let mut headers = HeaderMap::new();
    st.cors.apply(h, &mut headers, kind);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    put_validators(&mut headers, &img.validators);
    if not_modified(h, &img.validators) {
        return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    json(
        StatusCode::OK,
        &image_json(&img),
        headers,
        *req.method() == Method::HEAD,
    )
}

fn health_headers(st: &Shared, h: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    st.cors.apply(h, &mut headers, RouteKind::Health);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

/// `/health`.
pub async fn health(State(st): State<Shared>, req: Request) -> Response<Body> {
    let mut headers = health_headers(&st, req.headers());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    respond(StatusCode::OK, headers, Body::from("ok\n"))
}

/// `/healthz`.
pub async fn healthz(State(st): State<Shared>, req: Request) -> Response<Body> {
    let headers = health_headers(&st, req.headers());
    json(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
        headers,
        false,
    )
}

/// `/ready`, `/readyz`: the backend answers and the catalog parses.
pub async fn ready(State(st): State<Shared>, req: Request) -> Response<Body> {
    let headers = health_headers(&st, req.headers());
    match st.store.list().await {
        Ok(_) => json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
            headers,
            false,
        ),
        Err(e) => {
            tracing::warn!("not ready: {e:?}");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "error"}),
                headers,
                false,
            )
        }
    }
}

/// `/version`.
pub async fn version(State(st): State<Shared>, req: Request) -> Response<Body> {
    let headers = health_headers(&st, req.headers());
    let s = &st.settings;
    json(
        StatusCode::OK,
        &serde_json::json!({"version": s.version, "gitSha": s.git_sha, "builtAt": s.built_at}),
        headers,
        false,
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/metrics`.
pub async fn metrics(State(st): State<Shared>, req: Request) -> Response<Body> {
    let h = req.headers();
    let kind = RouteKind::Data;
    if let Some(token) = &st.settings.metrics_token {
        let auth = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b)));
        let parts: Vec<&str> = auth
            .map(|a| a.split_whitespace().collect())
            .unwrap_or_default();
        if parts.len() != 2 || !parts[0].eq_ignore_ascii_case("bearer") {
            let mut r = st.fail(
                h,
                kind,
                StatusCode::UNAUTHORIZED,
                "bearer token required",
                false,
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        if !constant_time_eq(parts[1].as_bytes(), token.as_bytes()) {
            return st.fail(h, kind, StatusCode::FORBIDDEN, "wrong token", false);
        }
    }
    let mut headers = HeaderMap::new();
    st.cors.apply(h, &mut headers, kind);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    respond(StatusCode::OK, headers, Body::from(st.metrics.render()))
}
