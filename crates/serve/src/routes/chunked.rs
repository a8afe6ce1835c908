//! `/v1/images/:image_id/chunked/...`: manifests and chunks of published images (SPEC 3.6).

use super::paths::{decode, ChunkedPath};
use super::{cache_control, content_headers, respond, Reply};
use crate::conditional::{derived_etag, revalidate, Validators};
use crate::images::StoreError;
use crate::layers::errors::ApiError;
use crate::layers::guard::Target;
use crate::metrics::StoreErrorKind;
use crate::state::Shared;
use aero_chunked::layout::{chunk_file_key, chunk_name_ok};
use aero_chunked::read::{is_missing, Origin, Plan};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Response, StatusCode};

/// What a chunked route serves.
enum Content {
    /// A manifest, as stored.
    Manifest(Bytes),
    /// A chunk object of `size` bytes.
    Chunk { key: String, size: u64 },
}

/// Handles every chunked route; the path's shape says which.
pub async fn handler(
    State(st): State<Shared>,
    Target(path): Target<ChunkedPath>,
    req: Request,
) -> Reply<Response<Body>> {
    let (method, h) = (req.method(), req.headers());
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not found");
    let name = match &path.chunk {
        Some(raw) => Some(
            decode(raw)
                .filter(|n| chunk_name_ok(n))
                .ok_or_else(not_found)?,
        ),
        None => None,
    };
    let fail = |e: StoreError| e.answer(&st.metrics);
    let (version, public) = match path.version {
        Some(v) => (v, st.store.public(&path.id).await.map_err(fail)?),
        None => st.store.current_version(&path.id).await.map_err(fail)?,
    };
    let m = st.store.manifest(&path.id, &version).await.map_err(fail)?;
    let (content, v) = match name {
        None => (
            Content::Manifest(m.bytes.clone()),
            Validators {
                etag: m.etag.clone(),
                last_modified: m.last_modified,
            },
        ),
        Some(name) => {
            let key = chunk_file_key(&m.version_prefix, &name);
            let (size, v) = match m.manifest.chunk_index(&name) {
                Some(index) => {
                    let size = m.manifest.chunk_len(index);
                    let etag = m
                        .manifest
                        .chunk_sha256(index)
                        .map(|d| format!("\"{}\"", d.to_ascii_lowercase()))
                        .unwrap_or_else(|| derived_etag(size, m.last_modified, false));
                    let v = Validators {
                        etag,
                        last_modified: m.last_modified,
                    };
                    (size, v)
                }
                None => {
                    let stat = st.store.stat(&key).await.map_err(fail)?;
                    let v = Validators {
                        etag: derived_etag(stat.size, stat.last_modified, false),
                        last_modified: stat.last_modified,
                    };
                    (stat.size, v)
                }
            };
            if size > st.settings.max_chunk_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "chunk of {size} bytes exceeds the limit of {} bytes",
                        st.settings.max_chunk_bytes
                    ),
                ));
            }
            (Content::Chunk { key, size }, v)
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        cache_control(h, public, true, st.settings.public_max_age),
    );
    if revalidate(h, &mut headers, &v) {
        return Ok(respond(StatusCode::NOT_MODIFIED, headers, Body::empty()));
    }
    let (content_type, len) = match &content {
        Content::Manifest(bytes) => ("application/json", bytes.len() as u64),
        Content::Chunk { size, .. } => ("application/octet-stream", *size),
    };
    content_headers(&mut headers, content_type, len);
    let (key, size) = match content {
        Content::Manifest(bytes) => {
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            return Ok(respond(StatusCode::OK, headers, body));
        }
        Content::Chunk { key, size } => (key, size),
    };
    // Checked before any header is sent, so a damaged object is an error, not a short body.
    let stat = st.store.stat(&key).await.map_err(fail)?;
    if stat.size != size {
        return Err(fail(StoreError::Io(format!(
            "{key} holds {} bytes, the manifest says {size}",
            stat.size
        ))));
    }
    if method == Method::HEAD {
        return Ok(respond(StatusCode::OK, headers, Body::empty()));
    }
    let tag = format!("{}|{:?}", v.etag, v.last_modified);
    let plan = Plan::new(Origin::Raw(key.clone()), 0, size, tag.into());
    let body = st
        .pieces
        .body(plan, size, false, &path.id)
        .await
        .map_err(|e| {
            if is_missing(&e) {
                return not_found();
            }
            st.metrics.store_error(StoreErrorKind::OpenRange);
            tracing::error!("reading {key}: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reading {key} failed: {e}"),
            )
        })?;
    Ok(respond(StatusCode::OK, headers, Body::new(body)))
}
