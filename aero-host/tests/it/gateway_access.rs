//! The gateway grants, `serve` enforces (SPEC 5.1, 5.2), as processes on one s3s-fs bucket and
//! one lease-key file: an image uploaded through `aero-host gateway` is private from its
//! first byte, so `aero-host serve` refuses it without a lease; a lease from `POST …/lease` (or
//! from redeeming a share link) reads exactly its bytes through serve; `PATCH` of visibility
//! reaches serve through the visibility object. The gateway runs at debug level with its log
//! captured, and no lease, share-link token or key appears in it.

use crate::gateway::Gateway;
use crate::support::lease::Keys;
use crate::support::serve::*;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `curl` of the gateway as `user`, with an optional JSON body: (status, JSON).
fn api(
    gw: &Gateway,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", gw.base);
    let mut args = vec!["-X".to_string(), method.to_string(), url];
    if let Some(u) = user {
        args.extend(["-H".into(), format!("X-User-Id: {u}")]);
    }
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data".into(),
            b.to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, body) = curl(&args);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Waits until `curl ARGS` answers `want` (serve caches visibility objects for a moment);
/// returns the body.
pub(crate) fn answers(args: &[&str], want: u16) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = curl(args);
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "{args:?}: {status}, not {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Uploads `file` as alice through presigned part URLs and waits until it is ready.
fn upload(gw: &Gateway, file: &std::path::Path) -> (String, Value) {
    let (status, made) = api(gw, "POST", "/v1/images", Some("alice"), None);
    assert_eq!(status, 200, "{made}");
    let id = made["imageId"].as_str().unwrap().to_string();
    let upload_id = made["uploadId"].as_str().unwrap();
    let (status, presigned) = api(
        gw,
        "POST",
        &format!("/v1/images/{id}/upload-url"),
        Some("alice"),
        Some(json!({"uploadId": upload_id, "partNumber": 1})),
    );
    assert_eq!(status, 200, "{presigned}");
    let (status, headers, _) = curl(&[
        "-T",
        file.to_str().unwrap(),
        presigned["url"].as_str().unwrap(),
    ]);
    assert_eq!(status, 200);
    let etag = hv(&headers, "etag").unwrap().to_string();
    let (status, done) = api(
        gw,
        "POST",
        &format!("/v1/images/{id}/complete"),
        Some("alice"),
        Some(json!({"uploadId": upload_id, "parts": [{"partNumber": 1, "etag": etag}]})),
    );
    assert_eq!(status, 200, "{done}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, rec) = api(gw, "GET", &format!("/v1/images/{id}"), Some("alice"), None);
        if rec["state"] != "processing" {
            assert_eq!(rec["state"], "ready", "{rec}");
            return (id, rec);
        }
        assert!(Instant::now() < deadline, "still processing: {rec}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_gateway_lease_reads_a_private_image_through_serve_and_no_secret_is_logged() {
    let s3 = S3::start(aero_test_support::BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::write(dir.path(), "lease-keys.json", "k1", &[("k1", "a1")]);
    let log_path = dir.path().join("gateway.log");
    let mut gw = Gateway::start_with(
        &s3,
        &format!("sqlite:{}", dir.path().join("g.sqlite").display()),
        &["--lease-keys", &keys.arg(), "--log-level", "debug"],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let file = dir.path().join("disk.raw");
    let data = make_raw(&file, 3 * 1024 * 1024 + 4096);
    let (id, rec) = upload(&gw, &file);
    assert_eq!(rec["visibility"], "private");

    let srv = Server::on_gateway_bucket(&s3, &["--lease-keys", &keys.arg()]);
    let bytes = srv.url(&format!("/v1/images/{id}"));
    let manifest = srv.url(&format!("/v1/images/{id}/chunked/manifest.json"));

    // Private: serve refuses without a lease, as JSON, never bytes.
    let (status, _, body) = curl(&[&bytes]);
    assert_eq!(status, 401);
    assert!(body.len() < 512);

    // The owner's lease reads exactly the image through serve, as bearer and query parameter.
    let mut secrets = Vec::new();
    let (status, lease) = api(
        &gw,
        "POST",
        &format!("/v1/images/{id}/lease"),
        Some("alice"),
        None,
    );
    assert_eq!(status, 200, "{lease}");
    let token = lease["lease"].as_str().unwrap().to_string();
    secrets.push(token.clone());
    let (status, _, body) = curl(&["-H", &format!("Authorization: Bearer {token}"), &bytes]);
    assert_eq!((status, sha256(&body)), (200, sha256(&data)));
    let (status, headers, _) = curl(&[&format!("{manifest}?lease={token}")]);
    assert_eq!(status, 200);
    assert_eq!(
        hv(&headers, "cache-control"),
        Some("private, no-store, no-transform")
    );

    // A share link's token, redeemed for a lease, reads it too; renewing gives another.
    let (status, link) = api(
        &gw,
        "POST",
        &format!("/v1/images/{id}/share-links"),
        Some("alice"),
        None,
    );
    assert_eq!(status, 201, "{link}");
    let share = link["token"].as_str().unwrap().to_string();
    secrets.push(share.clone());
    assert_eq!(
        api(
            &gw,
            "PATCH",
            &format!("/v1/images/{id}"),
            Some("alice"),
            Some(json!({"visibility": "shared"}))
        )
        .0,
        200
    );
    let (status, redeemed) = api(
        &gw,
        "POST",
        &format!("/v1/images/{id}/lease"),
        None,
        Some(json!({"shareToken": share})),
    );
    assert_eq!(status, 200, "{redeemed}");
    let link_lease = redeemed["lease"].as_str().unwrap().to_string();
    secrets.push(link_lease.clone());
    let (status, _, body) = curl(&["-H", &format!("Cookie: aero_lease={link_lease}"), &bytes]);
    assert_eq!((status, sha256(&body)), (200, sha256(&data)));
    let (status, _, renewed) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {link_lease}"),
        &format!("{}/v1/images/{id}/lease", gw.base),
    ]);
    assert_eq!(status, 200);
    let renewed: Value = serde_json::from_slice(&renewed).unwrap();
    secrets.push(renewed["lease"].as_str().unwrap().to_string());

    // Public: serve needs no lease; private again: it does (once its cache of the visibility
    // object, cache_ttl_ms, lapses).
    assert_eq!(
        api(
            &gw,
            "PATCH",
            &format!("/v1/images/{id}"),
            Some("alice"),
            Some(json!({"visibility": "public"}))
        )
        .0,
        200
    );
    assert_eq!(sha256(&answers(&[&bytes], 200)), sha256(&data));
    assert_eq!(
        api(
            &gw,
            "PATCH",
            &format!("/v1/images/{id}"),
            Some("alice"),
            Some(json!({"visibility": "private"}))
        )
        .0,
        200
    );
    answers(&[&bytes], 401);

    // Refused secrets are not logged either: a bad share token and a tampered lease.
    let bad_share = "A".repeat(43);
    assert_eq!(
        api(
            &gw,
            "POST",
            &format!("/v1/images/{id}/lease"),
            None,
            Some(json!({"shareToken": bad_share}))
        )
        .0,
        401
    );
    let tampered = crate::support::lease::tampered(&token);
    let (status, _, _) = curl(&[
        "-H",
        &format!("Authorization: Bearer {tampered}"),
        &format!("{}/v1/images/{id}/range", gw.base),
    ]);
    assert_eq!(status, 401);
    secrets.push(tampered);

    gw.terminate();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("aero-host gateway: on http"), "{logged}");
    assert!(logged.lines().count() > 5, "debug logging is on: {logged}");
    for secret in &secrets {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !logged.contains(secret.as_str()) && !logged.contains(signature),
            "a token is in the gateway's log"
        );
    }
    assert!(
        !logged.contains(&"a1".repeat(32)),
        "a lease key is in the gateway's log"
    );
}
