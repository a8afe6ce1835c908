//! `/v1/images/:image_id/chunked/...`: manifests and chunks of published images (SPEC 3.6).

use super::body::{Accounting, SizedBody};
use super::bytes::respond;
use super::conditional::{derived_etag, not_modified, put_validators, Validators};
use super::cors::RouteKind;
use super::ids::{decode, MAX_RAW_CHUNK, MAX_RAW_ID};
use super::images::StoreError;
use super::state::{method_not_allowed, segments, Reply, Shared};
use aero_chunked::layout::{chunk_file_key, chunk_name_ok, id_ok};
use aero_chunked::read::{is_missing, Origin, Piece, Plan};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::collections::VecDeque;
use std::sync::Arc;

const KIND: RouteKind = RouteKind::Data;

/// Handles every chunked route; the path's shape says which.
pub async fn handler(State(st): State<Shared>, req: Request) -> Response<Body> {
    match serve(&st, req.method(), req.headers(), req.uri().path()).await {
        Ok(r) | Err(r) => r,
    }
}

async fn serve(st: &Shared, method: &Method, h: &HeaderMap, path: &str) -> Reply<Response<Body>> {
    let not_found = || st.fail(h, KIND, StatusCode::NOT_FOUND, "not found", false);
    let seg = segments(path);
    // v1 images ID chunked ...
    let raw_id = seg.get(2).copied().unwrap_or("");
    if raw_id.len() > MAX_RAW_ID {
        return Err(st.fail(h, KIND, StatusCode::NOT_FOUND, "not found", true));
    }
    let rest = &seg[4.min(seg.len())..];
    let (raw_version, chunk) = match rest {
        ["manifest.json" | "manifest"] => (None, None),
        ["chunks", name] => (None, Some(*name)),
        [v, "manifest.json" | "manifest"] => (Some(*v), None),
        [v, "chunks", name] => (Some(*v), Some(*name)),
        _ => return Err(not_found()),
    };
    let id = decode(raw_id).filter(|i| id_ok(i)).ok_or_else(not_found)?;
    let version = match raw_version {
        Some(v) if v.len() > MAX_RAW_ID => return Err(not_found()),
        Some(v) => Some(decode(v).filter(|v| id_ok(v)).ok_or_else(not_found)?),
        None => None,
    };
    if chunk.is_some_and(|c| c.len() > MAX_RAW_CHUNK) {
        return Err(not_found());
    }
    if *method == Method::OPTIONS {
        let _permit = st.permit(h, false)?;
        return Ok(st.preflight(h, KIND));
    }
    if *method != Method::GET && *method != Method::HEAD {
        return Err(method_not_allowed(st, h, KIND));
    }
    let permit = st.permit(h, false)?;
    let name = match chunk {
        Some(raw) => Some(
            decode(raw)
                .filter(|n| chunk_name_ok(n))
                .ok_or_else(not_found)?,
        ),
        None => None,
    };
    let fail = |e: StoreError| st.store_fail(h, KIND, e, false);
    let (version, public) = match version {
        Some(v) => (v, st.store.public(&id).await.map_err(fail)?),
        None => st.store.current_version(&id).await.map_err(fail)?,
    };
    let m = st.store.manifest(&id, &version).await.map_err(fail)?;
    let mut headers = HeaderMap::new();
    st.cors.apply(h, &mut headers, KIND);
    headers.insert(header::CACHE_CONTROL, st.cache_control(h, public, true));

    let Some(name) = name else {
        let v = Validators {
            etag: m.etag.clone(),
            last_modified: m.last_modified,
        };
        put_validators(&mut headers, &v);
        if not_modified(h, &v) {
            return Ok(respond(StatusCode::NOT_MODIFIED, headers, Body::empty()));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        finish(&mut headers, m.bytes.len() as u64);
        let body = if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(m.bytes.clone())
        };
        return Ok(respond(StatusCode::OK, headers, body));
    };

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
        return Err(st.fail(
            h,
            KIND,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "chunk of {size} bytes exceeds the limit of {} bytes",
                st.settings.max_chunk_bytes
            ),
            false,
        ));
    }
    put_validators(&mut headers, &v);
    if not_modified(h, &v) {
        return Ok(respond(StatusCode::NOT_MODIFIED, headers, Body::empty()));
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    finish(&mut headers, size);
    // Checked before any header is sent, so a damaged object is an error, not a short body.
    let stat = st.store.stat(&key).await.map_err(fail)?;
    if stat.size != size {
        return Err(fail(StoreError::Io(format!(
            "{key} holds {} bytes, the manifest says {size}",
            stat.size
        ))));
    }
    if *method == Method::HEAD {
        return Ok(respond(StatusCode::OK, headers, Body::empty()));
    }
    let tag = format!("{}|{:?}", v.etag, v.last_modified);
    let mut plan = Plan::new(Origin::Raw(key), 0, size, tag.into());
    let ready = match plan.next() {
        Some(first) => read(st, h, &first).await?,
        None => VecDeque::new(),
    };
    let body = SizedBody::new(
        Arc::clone(&st.store.storage),
        ready,
        plan,
        size,
        permit,
        Some(Accounting {
            metrics: st.metrics.clone(),
            image_id: id,
        }),
    );
    Ok(respond(StatusCode::OK, headers, Body::new(body)))
}

async fn read(st: &Shared, h: &HeaderMap, p: &Piece) -> Reply<VecDeque<axum::body::Bytes>> {
    st.store.read_cached(p).await.map_err(|e| {
        if is_missing(&e) {
            st.fail(h, KIND, StatusCode::NOT_FOUND, "not found", false)
        } else {
            st.metrics
                .store_error(super::metrics::StoreErrorKind::OpenRange);
            tracing::error!("reading {}: {e}", p.key);
            st.fail(
                h,
                KIND,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reading {} failed: {e}", p.key),
                false,
            )
        }
    })
}

fn finish(headers: &mut HeaderMap, len: u64) {
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}
