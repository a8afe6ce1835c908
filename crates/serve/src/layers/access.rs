//! Leases for private images (SPEC 5.1, 5.2), on the bytes, chunked and meta routes, after
//! the guard. The image's visibility comes from its visibility object ([`Store::visibility`]);
//! public images pass untouched. A private or shared image needs a lease that this server's
//! keys verify and that covers the image (and the version served): taken from
//! `Authorization: Bearer`, else the `lease` query parameter, else the `aero_lease` cookie.
//! A request without a valid lease gets 401, a lease for something else 403, both as JSON
//! errors (the CORS layer adds its headers); granted responses are `private, no-store,
//! no-transform`. Tokens are never logged or echoed.
//!
//! [`Store::visibility`]: crate::images::Store::visibility

use super::errors::ApiError;
use super::guard::{Shape, Target};
use crate::routes::paths::{ChunkedPath, ImagePath, MetaPath};
use crate::state::Shared;
use aero_access::{LeaseError, Visibility};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use std::time::SystemTime;

/// A route shape that names an image (and maybe a version).
pub trait Scoped: Shape {
    /// The image.
    fn image(&self) -> &str;
    /// The version the path names.
    fn version(&self) -> Option<&str>;
}

impl Scoped for ImagePath {
    fn image(&self) -> &str {
        &self.id
    }
    fn version(&self) -> Option<&str> {
        None
    }
}

impl Scoped for ChunkedPath {
    fn image(&self) -> &str {
        &self.id
    }
    fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

impl Scoped for MetaPath {
    fn image(&self) -> &str {
        &self.id
    }
    fn version(&self) -> Option<&str> {
        None
    }
}

/// Why a request for a private image is refused.
enum Denied {
    /// The lease is missing or does not grant the request.
    Lease(LeaseError),
    /// This server has no lease keys, so it cannot grant anything.
    NoKeys,
}

/// Checks the request's lease against `id` at the version the path names (or, for a lease
/// limited to a version, the version the route would serve).
async fn authorize(
    st: &Shared,
    token: Option<String>,
    id: &str,
    version: Option<&str>,
) -> Result<(), Denied> {
    let keys = st.settings.lease_keys.as_ref().ok_or(Denied::NoKeys)?;
    let token = token.ok_or(Denied::Lease(LeaseError::Missing))?;
    let lease = keys
        .verify(&token, SystemTime::now())
        .map_err(Denied::Lease)?;
    let current;
    let version = match (version, &lease.version) {
        (None, Some(_)) => {
            current = st.store.current_version(id).await.ok().map(|(v, _)| v);
            current.as_deref()
        }
        (v, _) => v,
    };
    lease.covers(id, version).map_err(Denied::Lease)
}

fn refuse(denied: Denied, ranges: bool) -> Response<Body> {
    let (status, message, challenge) = match denied {
        Denied::NoKeys => (
            StatusCode::FORBIDDEN,
            "this image is private and this server verifies no leases (serve --lease-keys)"
                .to_string(),
            None,
        ),
        Denied::Lease(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            (status, e.to_string(), Some(e.challenge()))
        }
    };
    let mut err = ApiError::new(status, &message).accept_ranges(ranges);
    if let Some(c) = challenge {
        err = err.with(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    err.into_response()
}

/// The access middleware of shape `S`.
pub async fn layer<S: Scoped>(
    State(st): State<Shared>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let Some(Target(path)) = req.extensions().get::<Target<S>>() else {
        return next.run(req).await;
    };
    let (id, version) = (path.image().to_string(), path.version().map(str::to_string));
    let token = aero_access::carrier::presented(req.headers(), req.uri());
    match st.store.visibility(&id).await {
        Ok(Visibility::Public) => return next.run(req).await,
        Ok(_) => {}
        Err(e) => {
            return e
                .answer(&st.metrics)
                .accept_ranges(S::RANGES)
                .into_response()
        }
    }
    if let Err(denied) = authorize(&st, token, &id, version.as_deref()).await {
        return refuse(denied, S::RANGES);
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store, no-transform"),
    );
    resp
}
