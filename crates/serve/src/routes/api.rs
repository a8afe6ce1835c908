//! The metadata API (SPEC 3.10): `/v1/images` and `/v1/images/:id/meta`.

use super::paths::MetaPath;
use super::{json, respond, Reply};
use crate::conditional::{revalidate, Validators};
use crate::images::{Image, StoreError};
use crate::layers::errors::ApiError;
use crate::layers::guard::Target;
use crate::state::Shared;
use aero_access::Visibility;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

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

/// `/v1/images`: the public images (private and shared ones are not listed).
pub async fn list(State(st): State<Shared>, req: Request) -> Reply<Response<Body>> {
    let mut images = Vec::new();
    for img in st.store.list().await.map_err(|e| e.answer(&st.metrics))? {
        if matches!(st.store.visibility(&img.id).await, Ok(Visibility::Public)) {
            images.push(img);
        }
    }
    let v = Validators {
        etag: list_etag(&images),
        last_modified: None,
    };
    let body = serde_json::Value::Array(images.iter().map(image_json).collect());
    Ok(answer(&req, &v, &body))
}

/// `/v1/images/:id/meta`.
pub async fn meta(
    State(st): State<Shared>,
    Target(path): Target<MetaPath>,
    req: Request,
) -> Reply<Response<Body>> {
    let img = st.store.image(&path.id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "image not found"),
        e => e.answer(&st.metrics),
    })?;
    Ok(answer(&req, &img.validators, &image_json(&img)))
}

/// The metadata answer: `no-cache`, validators, then 304 or the JSON.
fn answer(req: &Request, v: &Validators, body: &serde_json::Value) -> Response<Body> {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if revalidate(req.headers(), &mut headers, v) {
        return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    json(StatusCode::OK, body, headers, req.method() == Method::HEAD)
}
