//! `/v1/images/:image_id[/data]`: image bytes with Range (SPEC 3.5).

use super::paths::ImagePath;
use super::{cache_control, content_headers, respond, Reply};
use crate::conditional::{if_range_satisfied, revalidate};
use crate::images::Image;
use crate::layers::errors::ApiError;
use crate::layers::guard::Target;
use crate::metrics::StoreErrorKind;
use crate::range::{self, RangeError};
use crate::state::Shared;
use aero_chunked::read::{is_missing, Plan};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

/// The handler.
pub async fn handler(
    State(st): State<Shared>,
    Target(path): Target<ImagePath>,
    req: Request,
) -> Reply<Response<Body>> {
    let (method, h) = (req.method(), req.headers());
    let image = st
        .store
        .image(&path.id)
        .await
        .map_err(|e| e.answer(&st.metrics).accept_ranges(true))?;
    let len = image.size;
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        cache_control(h, image.public, false, st.settings.public_max_age),
    );
    if revalidate(h, &mut headers, &image.validators) {
        return Ok(respond(StatusCode::NOT_MODIFIED, headers, Body::empty()));
    }
    let range_only = st.settings.require_range && method == Method::GET;
    let (status, start, end) = match wanted_range(&st, h, &image, range_only)? {
        Some((start, end)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end + 1)
        }
        None => (StatusCode::OK, 0, len),
    };
    content_headers(&mut headers, "application/octet-stream", end - start);
    if method == Method::HEAD {
        return Ok(respond(status, headers, Body::empty()));
    }
    let tag = format!(
        "{}|{:?}",
        image.validators.etag, image.validators.last_modified
    );
    let plan = Plan::new(image.source.clone(), start, end, tag.into());
    // Every piece of a range goes through the piece cache; of a full body, only the first.
    let body = st
        .pieces
        .body(
            plan,
            end - start,
            status == StatusCode::PARTIAL_CONTENT,
            &image.id,
        )
        .await
        .map_err(|e| {
            st.metrics.store_error(StoreErrorKind::OpenRange);
            tracing::error!("reading {}: {e}", image.id);
            let status = if is_missing(&e) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            ApiError::new(status, &format!("reading the image failed: {e}")).accept_ranges(true)
        })?;
    Ok(respond(status, headers, Body::new(body)))
}

/// The inclusive range to serve (`None` = the whole image), or the error to answer, in the
/// order of SPEC 3.5's table.
fn wanted_range(
    st: &Shared,
    h: &HeaderMap,
    image: &Image,
    range_only: bool,
) -> Reply<Option<(u64, u64)>> {
    let len = image.size;
    let fail = |status, msg: &str| ApiError::new(status, msg).accept_ranges(true);
    let unsatisfiable = |msg: &str| {
        let e = fail(StatusCode::RANGE_NOT_SATISFIABLE, msg);
        match HeaderValue::from_str(&format!("bytes */{len}")) {
            Ok(v) => e.with(header::CONTENT_RANGE, v),
            Err(_) => e,
        }
    };
    let invalid = |e: ApiError| {
        st.metrics.range(false);
        Err(e)
    };
    let whole = |msg: &str| {
        if range_only {
            Err(unsatisfiable(msg))
        } else {
            Ok(None)
        }
    };
    let Some(raw) = h.get(header::RANGE) else {
        return whole("this server only serves Range requests");
    };
    if !range_only && !if_range_satisfied(h, &image.validators) {
        return Ok(None);
    }
    let specs = match range::parse(raw.as_bytes()) {
        Ok(Some(specs)) => specs,
        Ok(None) => return whole("this server only serves Range requests"),
        Err(RangeError::UnsupportedUnit) => {
            st.metrics.range(false);
            return whole("only bytes ranges are supported");
        }
        Err(RangeError::HeaderTooLarge) => {
            return invalid(fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Range header too large",
            ))
        }
        Err(RangeError::TooManyRanges) => {
            return invalid(fail(StatusCode::PAYLOAD_TOO_LARGE, "too many ranges"))
        }
        Err(RangeError::Syntax) => return invalid(unsatisfiable("malformed Range header")),
    };
    if specs.len() != 1 {
        return invalid(unsatisfiable("only a single range is supported"));
    }
    let Some((start, end)) = range::resolve(specs[0], len) else {
        return invalid(unsatisfiable("range not satisfiable"));
    };
    if range_only && !if_range_satisfied(h, &image.validators) {
        return Err(fail(
            StatusCode::PRECONDITION_FAILED,
            "If-Range does not match",
        ));
    }
    let count = end - start + 1;
    if count > st.settings.max_range_bytes {
        return invalid(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "range of {count} bytes exceeds the limit of {} bytes",
                st.settings.max_range_bytes
            ),
        ));
    }
    st.metrics.range(true);
    Ok(Some((start, end)))
}
