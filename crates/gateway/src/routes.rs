//! The management routes: create an image, presign part URLs, report and complete the upload,
//! abort, delete, list and read records, metadata and stream-url (SPEC 4.3, 4.4, 4.5 with the
//! `none` and CloudFront modes), health and readiness. Every image route first checks that the
//! record exists (404) and that the permission matrix grants the caller the route's action
//! (403), through [`authz`].

use crate::auth;
use crate::authz::authorize;
use crate::error::{ApiError, ApiResult};
use crate::http::{json_body, required_json, self_url};
use crate::record::{iso, ImageRecord, JobState, State};
use crate::Gateway;
use aero_access::cloudfront::AuthMode as CloudFrontMode;
use aero_access::{visibility, Action, Visibility};
use axum::body::Body;
use axum::extract::{Path, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: i64 = 10_000;
/// Longest upload id accepted in a body.
const MAX_UPLOAD_ID: usize = 1024;
/// Longest part ETag accepted in a body.
const MAX_ETAG: usize = 4096;
/// Most records `GET /v1/images` returns.
const MAX_LISTED: i64 = 1000;

type Gw = Shared<Arc<Gateway>>;

fn require_state(rec: &ImageRecord, wanted: State, doing: &str) -> ApiResult<()> {
    if rec.state == wanted {
        return Ok(());
    }
    Err(ApiError::invalid_state(format!(
        "cannot {doing}: image {} is {}, not {}",
        rec.id,
        rec.state.as_str(),
        wanted.as_str()
    )))
}

/// `GET /health`, `/healthz`.
pub async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// `GET /readyz`: the bucket and the database answer.
pub async fn readyz(gw: Gw) -> ApiResult<Json<Value>> {
    gw.s3.head_bucket().await.map_err(|e| {
        tracing::warn!("readiness: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "S3_UNAVAILABLE",
            "the bucket does not answer",
        )
    })?;
    gw.db.ping().await.map_err(|e| {
        tracing::warn!("readiness: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DB_UNAVAILABLE",
            "the database does not answer",
        )
    })?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    kind: Option<String>,
}

/// `POST /v1/images`: a record in `uploading` and an S3 multipart upload.
pub async fn create(gw: Gw, headers: HeaderMap, body: Body) -> ApiResult<Json<Value>> {
    let owner = auth::caller(gw.settings.auth_mode, &gw.db, &headers).await?;
    let body: Option<CreateBody> = json_body(body, gw.settings.max_body_bytes).await?;
    let kind = body.and_then(|b| b.kind).unwrap_or_else(|| "disk".into());
    if kind != "disk" && kind != "iso" {
        return Err(ApiError::bad_request(format!(
            "kind '{kind}' is not one of disk, iso"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let version = uuid::Uuid::new_v4().to_string();
    let owner_segment = owner_segment(&owner);
    let base = gw.settings.upload_prefix();
    let source_key = if base.is_empty() {
        format!("{owner_segment}/{id}/{version}/disk.img")
    } else {
        format!("{base}/{owner_segment}/{id}/{version}/disk.img")
    };
    // The image is private from its first byte: `serve` reads the visibility object, and a
    // missing one would mean public.
    visibility::write(
        &gw.storage,
        &gw.settings.chunked_prefix,
        &id,
        Visibility::Private,
    )
    .await
    .map_err(|e| ApiError::bad_gateway("S3_ERROR", format!("visibility object: {e}")))?;
    let upload_id = gw
        .s3
        .create_multipart(&source_key, gw.settings.image_cache_control.header())
        .await?;
    let now = crate::db::now_ms();
    let rec = ImageRecord {
        id: id.clone(),
        owner_id: owner,
        kind,
        state: State::Uploading,
        failure_reason: None,
        version,
        upload_id: Some(upload_id.clone()),
        source_key,
        size_bytes: None,
        etag: None,
        last_modified: None,
        disk_format: None,
        disk_size: None,
        chunked_prefix: None,
        chunked_manifest_key: None,
        job_state: JobState::None,
        job_owner: None,
        job_lease_until: None,
        job_attempts: 0,
        created_at: now,
        updated_at: now,
        revision: 0,
        visibility: Visibility::Private,
    };
    gw.db.insert(&rec).await?;
    Ok(Json(json!({
        "imageId": id,
        "uploadId": upload_id,
        "partSize": gw.settings.part_size,
        "state": rec.state.as_str(),
    })))
}

/// `GET /v1/images`: the caller's images (not deleted ones).
pub async fn list(gw: Gw, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let caller = auth::caller(gw.settings.auth_mode, &gw.db, &headers).await?;
    let records = gw.db.list(&caller, MAX_LISTED).await?;
    Ok(Json(json!({
        "images": records.iter().map(ImageRecord::to_json).collect::<Vec<_>>()
    })))
}

/// `GET /v1/images/{id}`: the record.
pub async fn get_image(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, rec) = authorize(&gw, &headers, &id, Action::Read).await?;
    Ok(Json(rec.to_json()))
}

/// A part number from JSON: an integer 1..=10000.
fn part_number(value: &Value, what: &str) -> ApiResult<u32> {
    value
        .as_i64()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} must be an integer from 1 to {MAX_PART_NUMBER}, not {value}"
            ))
        })
}

/// The `uploadId` of a body: a string of at most 1024 characters equal to the record's.
fn check_upload_id(body: &Value, rec: &ImageRecord) -> ApiResult<()> {
    let given = body
        .get("uploadId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("uploadId (a string) is required"))?;
    if given.len() > MAX_UPLOAD_ID {
        return Err(ApiError::bad_request(format!(
            "uploadId is longer than {MAX_UPLOAD_ID} characters"
        )));
    }
    if rec.upload_id.as_deref() != Some(given) {
        return Err(ApiError::bad_request(format!(
            "uploadId does not match the upload of image {}",
            rec.id
        )));
    }
    Ok(())
}

/// `POST /v1/images/{id}/upload-url`: a presigned UploadPart URL for one part.
pub async fn upload_url(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (_, rec) = authorize(&gw, &headers, &id, Action::Upload).await?;
    let body: Value = required_json(body, gw.settings.max_body_bytes).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    require_state(&rec, State::Uploading, "presign a part")?;
    check_upload_id(&body, &rec)?;
    let part = part_number(body.get("partNumber").unwrap_or(&Value::Null), "partNumber")?;
    let upload_id = rec.upload_id.as_deref().unwrap_or_default();
    let url = gw
        .s3
        .presign_upload_part(
            &rec.source_key,
            upload_id,
            part,
            gw.settings.upload_url_expiry,
        )
        .await?;
    Ok(Json(json!({
        "url": url,
        "partNumber": part,
        "expiresInSeconds": gw.settings.upload_url_expiry.as_secs(),
    })))
}

/// Part numbers whose size is wrong: every part but the highest must be exactly `part_size`,
/// and the highest at most that.
fn wrong_sizes(parts: &[crate::s3::Part], part_size: u64) -> Vec<u32> {
    let last = parts.iter().map(|p| p.number).max().unwrap_or(0);
    parts
        .iter()
        .filter(|p| {
            if p.number == last {
                p.size > part_size || p.size == 0
            } else {
                p.size != part_size
            }
        })
        .map(|p| p.number)
        .collect()
}

/// `GET /v1/images/{id}/upload`: the parts S3 already holds, so a reloaded client can resume.
pub async fn upload_status(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, rec) = authorize(&gw, &headers, &id, Action::Upload).await?;
    require_state(&rec, State::Uploading, "list the uploaded parts")?;
    let upload_id = rec.upload_id.clone().unwrap_or_default();
    let parts = gw.s3.list_parts(&rec.source_key, &upload_id).await?;
    let wrong = wrong_sizes(&parts, gw.settings.part_size);
    Ok(Json(json!({
        "imageId": rec.id,
        "uploadId": upload_id,
        "partSize": gw.settings.part_size,
        "parts": parts.iter().map(|p| json!({
            "partNumber": p.number, "etag": p.etag, "size": p.size,
        })).collect::<Vec<_>>(),
        "wrongSizeParts": wrong,
    })))
}

/// An ETag in quoted form (a weak prefix kept).
fn quoted(etag: &str) -> String {
    let (weak, tag) = match etag.strip_prefix("W/") {
        Some(rest) => ("W/", rest),
        None => ("", etag),
    };
    if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
        format!("{weak}{tag}")
    } else {
        format!("{weak}\"{}\"", tag.trim_matches('"'))
    }
}

/// The parts of a complete body, validated and sorted.
fn requested_parts(body: &Value) -> ApiResult<Vec<(u32, String)>> {
    let parts = body
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("parts (an array) is required"))?;
    if parts.is_empty() || parts.len() > MAX_PART_NUMBER as usize {
        return Err(ApiError::bad_request(format!(
            "parts must hold 1 to {MAX_PART_NUMBER} parts, not {}",
            parts.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let number = part_number(
            part.get("partNumber").unwrap_or(&Value::Null),
            &format!("parts[{i}].partNumber"),
        )?;
        let etag = part
            .get("etag")
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty() && e.len() <= MAX_ETAG)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parts[{i}].etag must be a non-empty string of at most {MAX_ETAG} characters"
                ))
            })?;
        if !seen.insert(number) {
            return Err(ApiError::bad_request(format!(
                "part number {number} is listed twice"
            )));
        }
        out.push((number, quoted(etag.trim())));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// `POST /v1/images/{id}/complete`: completes the multipart upload and queues the conversion.
pub async fn complete(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (_, mut rec) = authorize(&gw, &headers, &id, Action::Upload).await?;
    let body: Value = required_json(body, gw.settings.max_body_bytes).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    require_state(&rec, State::Uploading, "complete the upload")?;
    check_upload_id(&body, &rec)?;
    let parts = requested_parts(&body)?;
    let upload_id = rec.upload_id.clone().unwrap_or_default();

    // Claim the completion for a while: of two concurrent completes one goes on, the other
    // gets 409; a claim left by a crashed call lapses and the complete can be retried.
    let now = crate::db::now_ms();
    if rec.job_lease_until.is_some_and(|until| until > now) {
        return Err(ApiError::conflict(&id));
    }
    rec.job_lease_until = Some(now + gw.settings.job_lease.as_millis() as i64);
    gw.db.save(&mut rec).await?;
    if let Err(e) = finish_upload(&gw, &mut rec, &upload_id, &parts).await {
        rec.job_lease_until = None;
        gw.db.save(&mut rec).await?;
        return Err(e);
    }
    Ok(Json(json!({
        "ok": true,
        "size": rec.size_bytes,
        "etag": rec.etag,
        "lastModified": rec.last_modified,
        "state": rec.state.as_str(),
    })))
}

/// Completes the multipart upload of a claimed `rec`, records the object and queues the
/// conversion.
async fn finish_upload(
    gw: &Gateway,
    rec: &mut ImageRecord,
    upload_id: &str,
    parts: &[(u32, String)],
) -> ApiResult<()> {
    // The parts S3 holds must be exactly the parts named, with their sizes right. An upload
    // S3 no longer knows may have been completed by an earlier call that could not record it:
    // then the object exists and is taken as is.
    let held = match gw.s3.list_parts(&rec.source_key, upload_id).await {
        Err(e) if e.status() == Some(404) => None,
        other => Some(other?),
    };
    if let Some(held) = held {
        check_parts(gw, parts, &held)?;
        match gw.s3.complete(&rec.source_key, upload_id, parts).await {
            Ok(()) => {}
            // Completed meanwhile by a concurrent call: the object decides below.
            Err(e) if e.status() == Some(404) => {}
            Err(e) if e.status() == Some(400) => {
                return Err(ApiError::bad_request(format!(
                    "S3 refused the parts: {}",
                    e.code().unwrap_or("error")
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let head = gw.s3.head(&rec.source_key).await?.ok_or_else(|| {
        ApiError::invalid_state(format!(
            "the upload of image {} no longer exists in S3",
            rec.id
        ))
    })?;
    if head.size > gw.settings.max_image_bytes {
        return Err(too_large(head.size, gw.settings.max_image_bytes));
    }
    rec.size_bytes = Some(head.size as i64);
    rec.etag = head.etag.clone();
    rec.last_modified = head
        .last_modified
        .as_deref()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .map(|t| iso(chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis()));
    rec.upload_id = None;
    rec.state = State::Processing;
    rec.job_state = JobState::Queued;
    rec.job_lease_until = None;
    gw.db.save(rec).await?;
    Ok(())
}

fn too_large(size: u64, limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "IMAGE_TOO_LARGE",
        format!("the upload is {size} bytes, over the limit of {limit}"),
    )
}

/// Checks that S3 holds every named part (with the named ETag, when S3 lists ETags), that
/// every part but the last has exactly the part size, and that the total is within the limit.
fn check_parts(gw: &Gateway, parts: &[(u32, String)], held: &[crate::s3::Part]) -> ApiResult<()> {
    let mut named = Vec::with_capacity(parts.len());
    for (number, etag) in parts {
        let part = held
            .iter()
            .find(|p| p.number == *number)
            .ok_or_else(|| ApiError::bad_request(format!("part {number} was never uploaded")))?;
        if part
            .etag
            .as_deref()
            .is_some_and(|held| quoted(held) != *etag)
        {
            return Err(ApiError::bad_request(format!(
                "part {number}: etag {etag} does not match the uploaded part"
            )));
        }
        named.push(part.clone());
    }
    let wrong = wrong_sizes(&named, gw.settings.part_size);
    if !wrong.is_empty() {
        return Err(ApiError::bad_request(format!(
            "parts {wrong:?} do not have the part size {} (only the last part may be smaller)",
            gw.settings.part_size
        )));
    }
    let total: u64 = named.iter().map(|p| p.size).sum();
    if total > gw.settings.max_image_bytes {
        return Err(too_large(total, gw.settings.max_image_bytes));
    }
    Ok(())
}

/// `POST /v1/images/{id}/abort`: aborts the multipart upload; the record becomes `failed`.
pub async fn abort(gw: Gw, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let (_, mut rec) = authorize(&gw, &headers, &id, Action::Upload).await?;
    require_state(&rec, State::Uploading, "abort the upload")?;
    let upload_id = rec.upload_id.take().unwrap_or_default();
    rec.state = State::Failed;
    rec.failure_reason = Some("the upload was aborted".into());
    gw.db.save(&mut rec).await?;
    gw.s3.abort(&rec.source_key, &upload_id).await?;
    Ok(Json(json!({"ok": true, "state": rec.state.as_str()})))
}

/// `DELETE /v1/images/{id}`: removes the uploaded and converted objects; the record stays as
/// `deleted`.
pub async fn delete_image(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, mut rec) = authorize(&gw, &headers, &id, Action::Delete).await?;
    match rec.state {
        State::Deleted => {
            return Err(ApiError::invalid_state(format!(
                "image {id} is already deleted"
            )))
        }
        // Its conversion is writing objects: deleting now could leave some behind.
        State::Processing => {
            return Err(ApiError::invalid_state(format!(
                "image {id} is being converted; delete it once it is ready or failed"
            )))
        }
        _ => {}
    }
    let upload_id = rec.upload_id.take();
    rec.state = State::Deleted;
    rec.job_state = JobState::Done;
    rec.job_owner = None;
    rec.job_lease_until = None;
    gw.db.save(&mut rec).await?;
    if let Some(upload_id) = upload_id {
        gw.s3.abort(&rec.source_key, &upload_id).await?;
    }
    let op = &gw.storage.operator;
    let image_root = format!("{}{}/", gw.settings.chunked_prefix, rec.id);
    for (path, recursive) in [
        (rec.source_key.as_str(), false),
        (image_root.as_str(), true),
    ] {
        op.delete_with(path)
            .recursive(recursive)
            .await
            .map_err(|e| ApiError::bad_gateway("S3_ERROR", format!("deleting {path}: {e}")))?;
    }
    Ok(Json(json!({"ok": true, "state": rec.state.as_str()})))
}

/// `GET /v1/images/{id}/metadata` (no state check, SPEC 4.3).
pub async fn metadata(
    gw: Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, rec) = authorize(&gw, &headers, &id, Action::Read).await?;
    Ok(Json(json!({
        "size": rec.size_bytes,
        "etag": rec.etag,
        "lastModified": rec.last_modified,
        "url": self_url(&headers, &format!("/v1/images/{id}/range")),
    })))
}

/// The owner's segment of an uploaded object's key (and of its CloudFront URL).
fn owner_segment(owner: &str) -> String {
    utf8_percent_encode(owner, NON_ALPHANUMERIC).to_string()
}

/// `GET /v1/images/{id}/stream-url`: where to stream a ready image from (SPEC 4.5). Without
/// CloudFront (`none`): the gateway's own range and chunked routes. With CloudFront, cookie
/// mode: the stable CloudFront URL and signed cookies (custom policy, wildcard resource) in
/// the JSON and as `Set-Cookie`; URL mode: a signed URL (canned policy). A partial CloudFront
/// configuration is 500 `MISCONFIG`.
pub async fn stream_url(gw: Gw, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let (_, rec) = authorize(&gw, &headers, &id, Action::Read).await?;
    require_state(&rec, State::Ready, "stream")?;
    let cloudfront = gw.settings.cloudfront.as_ref().map_err(misconfig)?;
    let manifest_route = self_url(&headers, &format!("/v1/images/{id}/chunked/manifest"));
    let mut set_cookies = Vec::new();
    let (url, auth, manifest_url) = match cloudfront {
        None => (
            self_url(&headers, &format!("/v1/images/{id}/range")),
            json!({"type": "none"}),
            manifest_route,
        ),
        Some(cf) => {
            let owner = owner_segment(&rec.owner_id);
            let disk = cf.disk_url(&owner, &rec.id, &rec.version);
            let now = std::time::SystemTime::now();
            match cf.mode() {
                CloudFrontMode::Cookie => {
                    let resource = format!("{}*", cf.version_url(&owner, &rec.id, &rec.version));
                    let signed = cf.sign_cookies(&resource, now).map_err(|e| misconfig(&e))?;
                    set_cookies = signed.cookies.iter().map(|c| c.set_cookie()).collect();
                    let manifest = crate::proxy::chunked_keys(&rec)
                        .map(|(key, _)| cf.key_url(&key))
                        .unwrap_or(manifest_route);
                    (disk, signed.auth_json(), manifest)
                }
                CloudFrontMode::Url => {
                    let signed = cf.sign_url(&disk, now).map_err(|e| misconfig(&e))?;
                    (signed.url.clone(), signed.auth_json(), manifest_route)
                }
            }
        }
    };
    let mut body = json!({
        "url": url,
        "auth": auth,
        "size": rec.size_bytes,
        "etag": rec.etag,
    });
    if rec.chunked_manifest_key.is_some() {
        body["chunked"] = json!({"delivery": "chunked", "manifestUrl": manifest_url});
    }
    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in set_cookies {
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_str(&c).map_err(ApiError::internal)?,
        );
    }
    Ok(resp)
}

/// 500 `MISCONFIG` (SPEC 4.3): CloudFront is partly or wrongly configured; the cause goes to
/// the log (it never quotes key material).
pub fn misconfig(e: &aero_access::cloudfront::CloudFrontError) -> ApiError {
    tracing::error!("{e}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), String::new())
}

/// Any path the gateway does not serve.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NO_ROUTE", "no such route")
}

/// A method the path does not take.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_with_the_weak_prefix_kept() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert_eq!(quoted("W/\"abc\""), "W/\"abc\"");
        assert_eq!(quoted("W/abc"), "W/\"abc\"");
    }

    #[test]
    fn only_the_last_part_may_be_short() {
        let p = |number, size| crate::s3::Part {
            number,
            etag: None,
            size,
        };
        assert!(wrong_sizes(&[p(1, 10), p(2, 10), p(3, 4)], 10).is_empty());
        assert_eq!(wrong_sizes(&[p(1, 9), p(2, 10)], 10), vec![1]);
        assert_eq!(wrong_sizes(&[p(1, 10), p(2, 11)], 10), vec![2]);
    }

    #[test]
    fn part_numbers_are_integers_in_range() {
        for bad in [
            json!(0),
            json!(10001),
            json!(1.5),
            json!("1"),
            json!(null),
            json!(-1),
        ] {
            assert!(part_number(&bad, "n").is_err(), "{bad}");
        }
        assert_eq!(part_number(&json!(10000), "n").unwrap(), 10000);
    }
}
