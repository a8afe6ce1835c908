//! The access routes (SPEC 5.1, 5.2): `PATCH /v1/images/{id}` (visibility and ACL), share
//! links (create, list, revoke) and `POST /v1/images/{id}/lease`, which grants a lease to a
//! session that may read the image, to the holder of a live share link, or renews a live lease
//! whose grant still holds. Answers carrying a secret are `Cache-Control: no-store`; secrets
//! are never logged.

use crate::authz::{self, Basis};
use crate::error::{ApiError, ApiResult};
use crate::grants::{Access, AclEntry, ShareLink};
use crate::http::json_body;
use crate::record::{iso, State};
use crate::Gateway;
use aero_access::share::{token_form_ok, ShareToken, TokenHash};
use aero_access::{visibility, Action, Visibility};
use axum::body::Body;
use axum::extract::{Path, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

/// Longest share-link lifetime a caller may ask for (10 years).
const MAX_LINK_SECONDS: u64 = 10 * 365 * 24 * 3600;

type Gw = Shared<Arc<Gateway>>;

/// `body` as JSON with `Cache-Control: no-store` (and `status`).
fn no_store(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AclBody {
    user_id: String,
    access: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    visibility: Option<String>,
    acl: Option<Vec<AclBody>>,
}

/// The checked ACL of a PATCH body.
fn acl_of(given: Vec<AclBody>, owner: &str, max: usize) -> ApiResult<Vec<AclEntry>> {
    if given.len() > max {
        return Err(ApiError::bad_request(format!(
            "acl holds {} users, over the limit of {max}",
            given.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(given.len());
    for (i, e) in given.into_iter().enumerate() {
        crate::auth::check_user_id(&e.user_id)?;
        let access = Access::parse(&e.access).ok_or_else(|| {
            ApiError::bad_request(format!(
                "acl[{i}].access '{}' is not one of read, write",
                e.access
            ))
        })?;
        if e.user_id == owner {
            return Err(ApiError::bad_request(format!(
                "acl[{i}]: the owner needs no ACL entry"
            )));
        }
        if !seen.insert(e.user_id.clone()) {
            return Err(ApiError::bad_request(format!(
                "acl[{i}]: user {} is listed twice",
                e.user_id
            )));
        }
        out.push(AclEntry {
            user_id: e.user_id,
            access,
        });
    }
    Ok(out)
}

fn acl_json(acl: &[AclEntry]) -> Value {
    Value::Array(
        acl.iter()
            .map(|e| json!({"userId": e.user_id, "access": e.access.as_str()}))
            .collect(),
    )
}

/// `PATCH /v1/images/{id}`: `{"visibility"?: "private"|"shared"|"public", "acl"?: [{"userId",
/// "access": "read"|"write"}]}` (the ACL is replaced whole). Needs `disk:share`. The database
/// is updated first, then the visibility object `serve` reads; a failed object write is a 502
/// and repeating the PATCH writes it again.
pub async fn patch(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (_, mut rec) = authz::authorize(&gw, &headers, &id, Action::Share).await?;
    let body: PatchBody = json_body(body, gw.settings.max_body_bytes)
        .await?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required"))?;
    if body.visibility.is_none() && body.acl.is_none() {
        return Err(ApiError::bad_request(
            "the body names nothing to change: visibility and/or acl",
        ));
    }
    if rec.state == State::Deleted {
        return Err(ApiError::invalid_state(format!("image {id} is deleted")));
    }
    let visibility = match body.visibility.as_deref() {
        None => rec.visibility,
        Some(name) => Visibility::from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "visibility '{name}' is not one of private, shared, public"
            ))
        })?,
    };
    let acl = body
        .acl
        .map(|a| acl_of(a, &rec.owner_id, gw.settings.max_acl_users))
        .transpose()?;
    rec.visibility = visibility;
    gw.db.save(&mut rec).await?;
    if let Some(acl) = &acl {
        gw.db.replace_acl(&id, acl).await?;
    }
    visibility::write(&gw.storage, &gw.settings.chunked_prefix, &id, visibility)
        .await
        .map_err(|e| ApiError::bad_gateway("S3_ERROR", format!("visibility object: {e}")))?;
    let acl = gw.db.acl(&id).await?;
    Ok(Json(json!({
        "imageId": id,
        "visibility": visibility.as_str(),
        "acl": acl_json(&acl),
    })))
}

fn link_json(link: &ShareLink, now: i64) -> Value {
    json!({
        "linkId": link.id,
        "imageId": link.image_id,
        "expiresAt": link.expires_at.map(iso),
        "revoked": link.revoked_at.is_some(),
        "live": link.live(now),
        "createdBy": link.created_by,
        "createdAt": iso(link.created_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LinkBody {
    expires_in_seconds: Option<u64>,
}

/// `POST /v1/images/{id}/share-links`: `{"expiresInSeconds"?: N}` → 201 with the link and its
/// `token`, shown this once (only its sha256 is stored). Needs `disk:share`.
pub async fn create_link(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (caller, rec) = authz::authorize(&gw, &headers, &id, Action::Share).await?;
    let body: Option<LinkBody> = json_body(body, gw.settings.max_body_bytes).await?;
    let lifetime = body.and_then(|b| b.expires_in_seconds);
    if lifetime.is_some_and(|s| s == 0 || s > MAX_LINK_SECONDS) {
        return Err(ApiError::bad_request(format!(
            "expiresInSeconds must lie between 1 and {MAX_LINK_SECONDS}"
        )));
    }
    if rec.state == State::Deleted {
        return Err(ApiError::invalid_state(format!("image {id} is deleted")));
    }
    let now = crate::db::now_ms();
    let live = gw
        .db
        .links(&id)
        .await?
        .iter()
        .filter(|l| l.live(now))
        .count();
    if live >= gw.settings.max_share_links {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LIMIT_REACHED",
            format!("image {id} has {live} live share links, the limit; revoke one first"),
        ));
    }
    let token = ShareToken::generate().map_err(ApiError::internal)?;
    let link = ShareLink {
        id: uuid::Uuid::new_v4().to_string(),
        image_id: id,
        token_hash: token.hash(),
        expires_at: lifetime.map(|s| now + (s as i64) * 1000),
        revoked_at: None,
        created_by: caller,
        created_at: now,
    };
    gw.db.insert_link(&link).await?;
    let mut body = link_json(&link, now);
    body["token"] = json!(token.as_str());
    Ok(no_store(StatusCode::CREATED, body))
}

/// `GET /v1/images/{id}/share-links`: every link of the image, never a token. Needs
/// `disk:share`.
pub async fn list_links(gw: Gw, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    authz::authorize(&gw, &headers, &id, Action::Share).await?;
    let now = crate::db::now_ms();
    let links = gw.db.links(&id).await?;
    Ok(no_store(
        StatusCode::OK,
        json!({"links": links.iter().map(|l| link_json(l, now)).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /v1/images/{id}/share-links/{linkId}`: revokes the link at once. Needs
/// `disk:share`.
pub async fn revoke_link(
    gw: Gw,
    Path((id, link_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authz::authorize(&gw, &headers, &id, Action::Share).await?;
    if !gw.db.revoke_link(&id, &link_id).await? {
        return Err(ApiError::not_found(format!(
            "image {id} has no share link {link_id}"
        )));
    }
    Ok(Json(
        json!({"ok": true, "linkId": link_id, "revoked": true}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LeaseBody {
    share_token: Option<String>,
}

fn bad_link() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTH",
        "the share link is unknown, revoked or expired",
    )
}

/// Who asks for a lease: a share-link holder (`{"shareToken"}`), else the holder of a live
/// lease for the image (a renewal, on the basis the lease names), else a session.
async fn basis_of(
    gw: &Gateway,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
    share_token: Option<String>,
) -> ApiResult<Basis> {
    if let Some(token) = share_token {
        if !token_form_ok(&token) {
            return Err(bad_link());
        }
        let link = gw
            .db
            .link_by_hash(&TokenHash::of(&token))
            .await?
            .filter(|l| l.live(crate::db::now_ms()))
            .ok_or_else(bad_link)?;
        if link.image_id != id {
            return Err(authz::forbidden("the share link is for another image"));
        }
        return Ok(Basis::Link(link.id));
    }
    if let Some(token) = authz::presented_lease(headers, uri) {
        let lease = authz::verify_lease(gw, &token, id)?;
        return lease
            .subject
            .as_deref()
            .and_then(Basis::parse)
            .ok_or_else(|| authz::forbidden("this lease names no grant to renew"));
    }
    let caller = crate::auth::caller(gw.settings.auth_mode, &gw.db, headers).await?;
    Ok(Basis::User(caller))
}

/// `POST /v1/images/{id}/lease`: `{"lease": TOKEN, "expiresAt": ISO}` for a ready image, a
/// `disk:read` lease of `lease_ttl` on the image's version, signed with the signing key of
/// the lease-key file. Optional body `{"shareToken": TOKEN}` redeems a share link.
pub async fn lease(
    gw: Gw,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let body: Option<LeaseBody> = json_body(body, gw.settings.max_body_bytes).await?;
    let basis = basis_of(&gw, &headers, &uri, &id, body.and_then(|b| b.share_token)).await?;
    let rec = authz::record(&gw, &id).await?;
    authz::check(&gw, &rec, Some(&basis), Action::Read).await?;
    if rec.state != State::Ready {
        return Err(ApiError::invalid_state(format!(
            "image {id} is {}: leases are granted for ready images only",
            rec.state.as_str()
        )));
    }
    let keys = gw.settings.lease_keys.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NO_LEASE_KEYS",
            "this gateway has no lease keys (--lease-keys)",
        )
    })?;
    let minted = keys
        .mint_for(
            &rec.id,
            Some(&rec.version),
            Some(&basis.subject()),
            gw.settings.lease_ttl,
            SystemTime::now(),
        )
        .map_err(ApiError::internal)?;
    let mut body = minted.to_json();
    body["imageId"] = json!(rec.id);
    body["version"] = json!(rec.version);
    Ok(no_store(StatusCode::OK, body))
}
