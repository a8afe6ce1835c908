//! Who may do what to an image, decided for every route by the one permission matrix of
//! `aero-access` (SPEC 5.2): the caller's roles (owner, the ACL's shared-read or shared-write,
//! link holder, anyone) and the image's visibility go in, the matrix answers. The management
//! plane authenticates sessions (`auth`); the data plane (range and chunked routes) also takes
//! a lease, as `serve` does.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::record::ImageRecord;
use crate::Gateway;
use aero_access::{matrix, Action, LeaseError, Role};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use std::time::SystemTime;

/// On whose behalf a lease is granted; named in the lease so a renewal asks the matrix again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// A user (by session).
    User(String),
    /// The holder of share link `id`.
    Link(String),
}

impl Basis {
    /// The lease subject: `user:ID` or `link:ID`.
    pub fn subject(&self) -> String {
        match self {
            Basis::User(u) => format!("user:{u}"),
            Basis::Link(l) => format!("link:{l}"),
        }
    }

    /// The basis a lease subject names.
    pub fn parse(subject: &str) -> Option<Basis> {
        if let Some(u) = subject.strip_prefix("user:") {
            return Some(Basis::User(u.to_string()));
        }
        subject
            .strip_prefix("link:")
            .map(|l| Basis::Link(l.to_string()))
    }
}

/// 403 `FORBIDDEN`.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no image {id}"))
}

/// The record `id` (404 when the id is malformed or unknown).
pub async fn record(gw: &Gateway, id: &str) -> ApiResult<ImageRecord> {
    if !aero_chunked::layout::id_ok(id) {
        return Err(not_found(id));
    }
    gw.db.get(id).await?.ok_or_else(|| not_found(id))
}

/// The role `basis` holds on `rec` by a stored grant, now: an ACL user's, or a live share
/// link's holder's.
async fn granted(gw: &Gateway, rec: &ImageRecord, basis: &Basis) -> ApiResult<Option<Role>> {
    Ok(match basis {
        Basis::User(user) => gw.db.acl_access(&rec.id, user).await?.map(|a| a.role()),
        Basis::Link(link) => gw
            .db
            .link(link)
            .await?
            .is_some_and(|l| l.image_id == rec.id && l.live(crate::db::now_ms()))
            .then_some(Role::LinkHolder),
    })
}

/// Whether `basis` (`None`: a caller with no identity) may do `action` on `rec`, by the
/// matrix; 403 naming the action if not. The roles the record alone shows (anyone's, the
/// owner's) are asked first; the stored grants (the ACL, a share link) are looked up only when
/// those do not suffice, so an owner's request or a read of a public image costs no query.
pub async fn check(
    gw: &Gateway,
    rec: &ImageRecord,
    basis: Option<&Basis>,
    action: Action,
) -> ApiResult<()> {
    let permitted = |roles: &[Role]| matrix::permitted(rec.visibility, roles, action);
    let owner = matches!(basis, Some(Basis::User(user)) if *user == rec.owner_id);
    let shown: &[Role] = if owner {
        &[Role::Public, Role::Owner]
    } else {
        &[Role::Public]
    };
    if permitted(shown) {
        return Ok(());
    }
    if let Some(basis) = basis {
        if granted(gw, rec, basis)
            .await?
            .is_some_and(|r| permitted(&[r]))
        {
            return Ok(());
        }
    }
    Err(forbidden(format!(
        "{} on image {} is not granted to this caller",
        action.scope(),
        rec.id
    )))
}

/// The session caller and the record `id`, when the caller may do `action` on it.
pub async fn authorize(
    gw: &Gateway,
    headers: &HeaderMap,
    id: &str,
    action: Action,
) -> ApiResult<(String, ImageRecord)> {
    let caller = auth::caller(gw.settings.auth_mode, &gw.db, headers).await?;
    let rec = record(gw, id).await?;
    check(gw, &rec, Some(&Basis::User(caller.clone())), action).await?;
    Ok((caller, rec))
}

/// The lease a request carries (bearer, `lease` query parameter, `aero_lease` cookie). A
/// bearer that is an API token (`AUTH_MODE=token`) is a session, not a lease.
pub fn presented_lease(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    use aero_access::carrier;
    carrier::bearer(headers)
        .filter(|b| !b.starts_with(auth::TOKEN_PREFIX))
        .or_else(|| carrier::query(uri))
        .or_else(|| carrier::cookie(headers))
}

/// The JSON error of a lease that does not grant a request: 401 when it is missing or
/// invalid, 403 when valid for something else.
pub fn lease_refusal(e: LeaseError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = if status == StatusCode::FORBIDDEN {
        "FORBIDDEN"
    } else {
        "UNAUTH"
    };
    ApiError::new(status, code, e.to_string()).with(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(e.challenge()),
    )
}

/// A lease verified by the gateway's keys and covering `rec` (its image and version).
pub fn verify_lease(gw: &Gateway, token: &str, rec_id: &str) -> ApiResult<aero_access::Lease> {
    let keys = gw
        .settings
        .lease_keys
        .as_ref()
        .ok_or_else(|| lease_refusal(LeaseError::UnknownKey))?;
    let lease = keys
        .verify(token, SystemTime::now())
        .map_err(lease_refusal)?;
    if lease.image != rec_id {
        return Err(lease_refusal(LeaseError::WrongImage));
    }
    Ok(lease)
}

/// The record `id` for a data-plane read: a lease for it, else a session that may read it,
/// else nobody at all for a public image. A presented lease decides alone (a bad one is
/// refused, never passed to the session).
pub async fn authorize_read(
    gw: &Gateway,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
) -> ApiResult<ImageRecord> {
    match presented_lease(headers, uri) {
        Some(token) => {
            let lease = verify_lease(gw, &token, id)?;
            let rec = record(gw, id).await?;
            lease
                .covers(&rec.id, Some(&rec.version))
                .map_err(lease_refusal)?;
            Ok(rec)
        }
        None => match authorize(gw, headers, id, Action::Read).await {
            Ok((_, rec)) => Ok(rec),
            // Anyone may read a public image, with no identity at all.
            Err(e) if e.status == StatusCode::UNAUTHORIZED => match record(gw, id).await {
                Ok(rec) if check(gw, &rec, None, Action::Read).await.is_ok() => Ok(rec),
                _ => Err(e),
            },
            Err(e) => Err(e),
        },
    }
}
