//! `/v1/images/:image_id[/data]`: image bytes with Range (SPEC 3.5).

use super::body::{Accounting, SizedBody};
use super::conditional::{if_range_satisfied, not_modified, put_validators};
use super::cors::RouteKind;
use super::ids::{decode, MAX_RAW_ID};
use super::images::Image;
use super::range::{self, RangeError};
use super::state::{method_not_allowed, segments, Reply, Shared};
use aero_chunked::layout::id_ok;
use aero_chunked::read::{is_missing, Plan};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

const KIND: RouteKind = RouteKind::Data;

/// The handler.
pub async fn handler(State(st): State<Shared>, req: Request) -> Response<Body> {
    let headers = req.headers();
    match serve(&st, req.method(), headers, req.uri().path()).await {
        Ok(r) | Err(r) => r,
    }
}

async fn serve(st: &Shared, method: &Method, h: &HeaderMap, path: &str) -> Reply<Response<Body>> {
    let not_found = || st.fail(h, KIND, StatusCode::NOT_FOUND, "image not found", true);
    let raw = segments(path).get(2).copied().unwrap_or("");
    if raw.len() > MAX_RAW_ID {
        return Err(not_found());
    }
    let id = decode(raw).filter(|id| id_ok(id)).ok_or_else(not_found)?;
    if *method == Method::OPTIONS {
        let _permit = st.permit(h, true)?;
        return Ok(st.preflight(h, KIND));
    }
    if *method != Method::GET && *method != Method::HEAD {
        return Err(method_not_allowed(st, h, KIND));
    }
    let permit = st.permit(h, true)?;
    let image = st
        .store
        .image(&id)
        .await
        .map_err(|e| st.store_fail(h, KIND, e, true))?;
    let cache_control = st.cache_control(h, image.public, false);
    let len = image.size;

    let mut base = HeaderMap::new();
    st.cors.apply(h, &mut base, KIND);
    base.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    base.insert(header::CACHE_CONTROL, cache_control);
    put_validators(&mut base, &image.validators);

    if not_modified(h, &image.validators) {
        return Ok(respond(StatusCode::NOT_MODIFIED, base, Body::empty()));
    }
    let range_only = st.settings.require_range && *method == Method::GET;
    let unsatisfiable = |msg: &str| {
        let mut r = st.fail(h, KIND, StatusCode::RANGE_NOT_SATISFIABLE, msg, true);
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        r
    };
    let too_large = |msg: &str| st.fail(h, KIND, StatusCode::PAYLOAD_TOO_LARGE, msg, true);

    let Some(raw_range) = h.get(header::RANGE) else {
        if range_only {
            return Err(unsatisfiable("this server only serves Range requests"));
        }
        return full(st, method, h, image, base, permit).await;
    };
    if !range_only && !if_range_satisfied(h, &image.validators) {
        return full(st, method, h, image, base, permit).await;
    }
    let specs = match range::parse(raw_range.as_bytes()) {
        Ok(Some(specs)) => specs,
        Ok(None) => {
            if range_only {
                return Err(unsatisfiable("this server only serves Range requests"));
            }
            return full(st, method, h, image, base, permit).await;
        }
        Err(RangeError::UnsupportedUnit) => {
            st.metrics.range(false);
            if range_only {
                return Err(unsatisfiable("only bytes ranges are supported"));
            }
            return full(st, method, h, image, base, permit).await;
        }
        Err(e @ (RangeError::HeaderTooLarge | RangeError::TooManyRanges)) => {
            st.metrics.range(false);
            return Err(too_large(match e {
                RangeError::HeaderTooLarge => "Range header too large",
                _ => "too many ranges",
            }));
        }
        Err(RangeError::Syntax) => {
            st.metrics.range(false);
            return Err(unsatisfiable("malformed Range header"));
        }
    };
    if specs.len() != 1 {
        st.metrics.range(false);
        return Err(unsatisfiable("only a single range is supported"));
    }
    let Some((start, end)) = range::resolve(specs[0], len) else {
        st.metrics.range(false);
        return Err(unsatisfiable("range not satisfiable"));
    };
    if range_only && !if_range_satisfied(h, &image.validators) {
        return Err(st.fail(
            h,
            KIND,
            StatusCode::PRECONDITION_FAILED,
            "If-Range does not match",
            true,
        ));
    }
    let count = end - start + 1;
    if count > st.settings.max_range_bytes {
        st.metrics.range(false);
        return Err(too_large(&format!(
            "range of {count} bytes exceeds the limit of {} bytes",
            st.settings.max_range_bytes
        )));
    }
    st.metrics.range(true);
    let mut headers = base;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    body(
        st,
        method,
        h,
        image,
        headers,
        permit,
        start,
        end + 1,
        StatusCode::PARTIAL_CONTENT,
    )
    .await
}

async fn full(
    st: &Shared,
    method: &Method,
    h: &HeaderMap,
    image: Image,
    headers: HeaderMap,
    permit: Option<OwnedSemaphorePermit>,
) -> Reply<Response<Body>> {
    let len = image.size;
    body(
        st,
        method,
        h,
        image,
        headers,
        permit,
        0,
        len,
        StatusCode::OK,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn body(
    st: &Shared,
    method: &Method,
    h: &HeaderMap,
    image: Image,
    mut headers: HeaderMap,
    permit: Option<OwnedSemaphorePermit>,
    start: u64,
    end: u64,
    status: StatusCode,
) -> Reply<Response<Body>> {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if *method == Method::HEAD {
        return Ok(respond(status, headers, Body::empty()));
    }
    let tag = format!(
        "{}|{:?}",
        image.validators.etag, image.validators.last_modified
    );
    let mut plan = Plan::new(image.source.clone(), start, end, tag.into());
    // A range (bounded by max_range_bytes) is read up front, its pieces concurrently; a full
    // body is streamed piece by piece after the first.
    let upfront: Vec<_> = if status == StatusCode::PARTIAL_CONTENT {
        plan.by_ref().collect()
    } else {
        plan.next().into_iter().collect()
    };
    let reads = futures::future::try_join_all(upfront.iter().map(|p| st.store.read_cached(p)));
    let ready: VecDeque<_> = reads
        .await
        .map(|v| v.into_iter().flatten().collect())
        .map_err(|e| {
            st.metrics
                .store_error(super::metrics::StoreErrorKind::OpenRange);
            let status = if is_missing(&e) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            tracing::error!("reading {}: {e}", image.id);
            st.fail(
                h,
                KIND,
                status,
                &format!("reading the image failed: {e}"),
                true,
            )
        })?;
    let body = SizedBody::new(
        Arc::clone(&st.store.storage),
        ready,
        plan,
        end - start,
        permit,
        Some(Accounting {
            metrics: st.metrics.clone(),
            image_id: image.id.clone(),
        }),
    );
    Ok(respond(status, headers, Body::new(body)))
}

/// A response with `status`, `headers` and `body`.
pub fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
