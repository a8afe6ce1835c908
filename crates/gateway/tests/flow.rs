//! The gateway end to end against s3s-fs, on SQLite and on PostgreSQL: uploads through
//! presigned part URLs, completion, server-side conversion, the read routes, and bad input.

#[macro_use]
mod support;

use aero_test_support::{sha256, S3Server};
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

on_both_databases!(
    raw_upload_converts_and_streams,
    qcow2_upload_converts_to_its_guest_bytes,
    bad_input_gets_json_errors_and_loses_nothing,
    uploads_that_are_no_disk_image_fail_with_the_reason,
    concurrent_writers_get_a_conflict,
);

async fn raw_upload_converts_and_streams(db: Database) {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let gw = start(&s3, settings(&s3, &url)).await;
    let alice = Client::new(&gw.url, "alice");
    let data = disk_bytes(12 * 1024 * 1024 + 4096, 1);

    let (id, upload_id) = alice.create().await;
    let parts = alice.upload_parts(&id, &upload_id, &data, PART).await;

    // A reloaded client sees the parts S3 holds, with exact sizes.
    let (status, up) = alice.get(&format!("/v1/images/{id}/upload")).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["parts"].as_array().unwrap().len(), 3);
    assert_eq!(up["parts"][0]["size"], PART);
    assert_eq!(up["wrongSizeParts"], json!([]));
    assert_eq!(up["uploadId"], upload_id.as_str());

    // Two completes at once: one records the upload, the other gets 409.
    let complete = format!("/v1/images/{id}/complete");
    let body = json!({"uploadId": upload_id, "parts": parts});
    let (first, second) = tokio::join!(
        alice.post(&complete, body.clone()),
        alice.post(&complete, body)
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let done = if first.0 == 200 { first.1 } else { second.1 };
    assert_eq!(done["ok"], true);
    assert_eq!(done["size"], data.len());
    assert!(done["etag"].as_str().unwrap().starts_with('"'));

    // Completing twice is a state error.
    let (status, again) = alice
        .post(
            &format!("/v1/images/{id}/complete"),
            json!({"uploadId": upload_id, "parts": parts}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "INVALID_STATE");

    let rec = alice.settled(&id, WAIT).await;
    assert_eq!(rec["state"], "ready", "{rec}");
    assert_eq!(rec["format"], "raw");
    assert!(rec["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rec["diskSizeBytes"], data.len());
    let manifest_key = rec["chunkedManifestKey"].as_str().unwrap();
    assert!(
        manifest_key.starts_with(&format!("images/{id}/")),
        "{manifest_key}"
    );
    // The standard layout, so `aero-host serve` on the bucket finds it by id.
    let latest: Value = serde_json::from_slice(
        &std::fs::read(s3.bucket_dir().join(format!("images/{id}/latest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(latest["manifestKey"], manifest_key);

    let (status, meta) = alice.get(&format!("/v1/images/{id}/metadata")).await;
    assert_eq!(status, 200);
    assert_eq!(meta["size"], data.len());
    assert_eq!(meta["url"], format!("{}/v1/images/{id}/range", gw.url));

    let resp = alice
        .req(Method::GET, &format!("/v1/images/{id}/stream-url"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let stream: Value = resp.json().await.unwrap();
    assert_eq!(stream["auth"], json!({"type": "none"}));
    assert_eq!(stream["url"], format!("{}/v1/images/{id}/range", gw.url));
    assert_eq!(
        stream["chunked"],
        json!({"delivery": "chunked", "manifestUrl": format!("{}/v1/images/{id}/chunked/manifest", gw.url)})
    );

    // Range proxy: 206 with the right bytes and headers, 200 in full, 416, 304, HEAD.
    let range = format!("/v1/images/{id}/range");
    let (status, h, body) = alice
        .bytes(
            alice
                .req(Method::GET, &range)
                .header("range", "bytes=100-5242979"),
        )
        .await;
    assert_eq!(status, 206);
    assert_eq!(body, &data[100..5_242_980]);
    assert_eq!(
        h["content-range"],
        format!("bytes 100-5242979/{}", data.len())
    );
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-encoding"], "identity");
    assert!(h["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-transform"));
    assert_eq!(h["cross-origin-resource-policy"], "same-site");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_string();
    let (status, _, body) = alice.bytes(alice.req(Method::GET, &range)).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), sha256(&data));
    for bad in [
        "bytes=-5",
        "bytes=0-1,4-5",
        "bytes=99999999999-",
        "lines=0-1",
    ] {
        let (status, h, _) = alice
            .bytes(alice.req(Method::GET, &range).header("range", bad))
            .await;
        assert_eq!(status, 416, "{bad}");
        assert_eq!(
            h["content-range"],
            format!("bytes */{}", data.len()),
            "{bad}"
        );
    }
    let (status, _, _) = alice
        .bytes(
            alice
                .req(Method::GET, &range)
                .header("if-none-match", etag.as_str()),
        )
        .await;
    assert_eq!(status, 304);
    let (status, _, body) = alice
        .bytes(
            alice
                .req(Method::GET, &range)
                .header("range", "bytes=0-9")
                .header("if-range", "\"stale\""),
        )
        .await;
    assert_eq!(
        (status, body.len()),
        (200, data.len()),
        "If-Range mismatch gives the whole object"
    );
    let (status, _, body) = alice
        .bytes(
            alice
                .req(Method::GET, &range)
                .header("range", "bytes=0-9")
                .header("if-range", etag.as_str()),
        )
        .await;
    assert_eq!((status, body), (206, data[..10].to_vec()));
    let (status, h, _) = alice.bytes(alice.req(Method::HEAD, &range)).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-length"], data.len().to_string());
    let (status, _, _) = alice
        .bytes(
            alice
                .req(Method::GET, &range)
                .header("range", format!("bytes=0-{}", "9".repeat(17 * 1024))),
        )
        .await;
    assert_eq!(status, 413);

    // Chunked routes: the manifest and every chunk, whose bytes are the disk.
    let (status, h, body) = alice
        .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/manifest")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/json");
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let count = manifest["chunkCount"].as_u64().unwrap();
    assert_eq!(count, 13);
    let mut joined = Vec::new();
    for i in 0..count {
        let path = if i % 2 == 0 {
            format!("/v1/images/{id}/chunked/chunks/{i}")
        } else {
            format!("/v1/images/{id}/chunked/chunks/{i:08}.bin")
        };
        let (status, _, body) = alice.bytes(alice.req(Method::GET, &path)).await;
        assert_eq!(status, 200, "{path}");
        joined.extend(body);
    }
    assert_eq!(sha256(&joined), sha256(&data));
    let (status, _, _) = alice
        .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/chunks/99")))
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = alice
        .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/chunks/x1")))
        .await;
    assert_eq!(status, 400);

    // The list, then delete: objects gone, record `deleted`, not listed.
    let (_, list) = alice.get("/v1/images").await;
    assert_eq!(list["images"].as_array().unwrap().len(), 1);
    assert_eq!(list["images"][0]["imageId"], id.as_str());
    let (_, bob_list) = Client::new(&gw.url, "bob").get("/v1/images").await;
    assert_eq!(bob_list["images"], json!([]));
    let (status, gone) = alice
        .call(alice.req(Method::DELETE, &format!("/v1/images/{id}")))
        .await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(
        files_under(&s3.bucket_dir().join(format!("images/{id}"))),
        0
    );
    let source = rec["sourceObjectKey"].as_str().unwrap();
    assert!(!s3.bucket_dir().join(source).exists());
    let (_, rec) = alice.get(&format!("/v1/images/{id}")).await;
    assert_eq!(rec["state"], "deleted");
    let (_, list) = alice.get("/v1/images").await;
    assert_eq!(list["images"], json!([]));
    let (status, _) = alice.get(&format!("/v1/images/{id}/stream-url")).await;
    assert_eq!(status, 409);
}

/// Files (not directories: s3s-fs leaves empty ones) under `dir`.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

async fn qcow2_upload_converts_to_its_guest_bytes(db: Database) {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let gw = start(&s3, settings(&s3, &url)).await;
    let alice = Client::new(&gw.url, "alice");
    let raw = disk_bytes(8 * 1024 * 1024, 2);
    std::fs::write(path(&dir, "disk.raw"), &raw).unwrap();
    qcow2_of(&path(&dir, "disk.raw"), &path(&dir, "disk.qcow2"));
    let qcow2 = std::fs::read(path(&dir, "disk.qcow2")).unwrap();

    let id = alice.upload(&qcow2, PART).await;
    let rec = alice.settled(&id, WAIT).await;
    assert_eq!(rec["state"], "ready", "{rec}");
    assert_eq!(rec["format"], "qcow2");
    assert_eq!(rec["diskSizeBytes"], raw.len());
    let (_, _, body) = alice
        .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/manifest")))
        .await;
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let mut joined = Vec::new();
    for i in 0..manifest["chunkCount"].as_u64().unwrap() {
        let (status, _, body) = alice
            .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/chunks/{i}")))
            .await;
        assert_eq!(status, 200);
        joined.extend(body);
    }
    assert_eq!(
        sha256(&joined),
        sha256(&raw),
        "the chunks hold the guest-visible bytes"
    );
}

async fn uploads_that_are_no_disk_image_fail_with_the_reason(db: Database) {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let gw = start(&s3, settings(&s3, &url)).await;
    let alice = Client::new(&gw.url, "alice");

    // Not a disk image: a text whose size is no multiple of 512.
    let id = alice.upload(b"just some notes, not a disk\n", PART).await;
    let rec = alice.settled(&id, WAIT).await;
    assert_eq!(rec["state"], "failed", "{rec}");
    assert!(
        rec["failureReason"]
            .as_str()
            .unwrap()
            .contains("multiple of 512"),
        "{rec}"
    );
    assert!(
        s3.bucket_dir()
            .join(rec["sourceObjectKey"].as_str().unwrap())
            .exists(),
        "the source is kept"
    );

    // A truncated qcow2.
    let raw = disk_bytes(4 * 1024 * 1024, 3);
    std::fs::write(path(&dir, "t.raw"), &raw).unwrap();
    qcow2_of(&path(&dir, "t.raw"), &path(&dir, "t.qcow2"));
    let qcow2 = std::fs::read(path(&dir, "t.qcow2")).unwrap();
    let id = alice.upload(&qcow2[..qcow2.len() / 2], PART).await;
    let rec = alice.settled(&id, WAIT).await;
    assert_eq!(rec["state"], "failed", "{rec}");
    let reason = rec["failureReason"].as_str().unwrap();
    assert!(reason.contains("qcow2"), "{reason}");
    assert!(s3
        .bucket_dir()
        .join(rec["sourceObjectKey"].as_str().unwrap())
        .exists());

    // A qcow2 with a backing file is refused: the server never reads its own files.
    let status = std::process::Command::new(aero_test_support::qemu_img_binary())
        .args(["create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname"])
        .arg(path(&dir, "overlay.qcow2"))
        .arg("1M")
        .status()
        .unwrap();
    assert!(status.success());
    let overlay = std::fs::read(path(&dir, "overlay.qcow2")).unwrap();
    let id = alice.upload(&overlay, PART).await;
    let rec = alice.settled(&id, WAIT).await;
    assert_eq!(rec["state"], "failed", "{rec}");
    assert!(
        rec["failureReason"].as_str().unwrap().contains("backing"),
        "{rec}"
    );
}

async fn bad_input_gets_json_errors_and_loses_nothing(db: Database) {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let mut s = settings(&s3, &url);
    s.max_body_bytes = 64 * 1024;
    s.max_image_bytes = PART as u64;
    let gw = start(&s3, s).await;
    let alice = Client::new(&gw.url, "alice");
    let bob = Client::new(&gw.url, "bob");
    let (id, upload_id) = alice.create().await;
    let upload_url = format!("/v1/images/{id}/upload-url");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    // Auth (dev mode): missing, blank, too long.
    let (status, e) = alice
        .call(alice.http.post(format!("{}/v1/images", gw.url)))
        .await;
    assert_eq!((status, code(&e)), (401, "UNAUTH".into()), "{e}");
    let (status, _) = alice
        .call(
            alice
                .http
                .post(format!("{}/v1/images", gw.url))
                .header("x-user-id", "  "),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = alice
        .call(
            alice
                .http
                .post(format!("{}/v1/images", gw.url))
                .header("x-user-id", "u".repeat(257)),
        )
        .await;
    assert_eq!(status, 400);

    // Bodies: missing, malformed, not an object, wrong types, out of range.
    let (status, e) = alice.call(alice.req(Method::POST, &upload_url)).await;
    assert_eq!((status, code(&e)), (400, "BAD_REQUEST".into()), "{e}");
    let (status, e) = alice
        .call(alice.req(Method::POST, &upload_url).body("{not json"))
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("JSON"));
    for body in [
        json!([1]),
        json!({"uploadId": upload_id}),
        json!({"uploadId": upload_id, "partNumber": 0}),
        json!({"uploadId": upload_id, "partNumber": 10001}),
        json!({"uploadId": upload_id, "partNumber": 1.5}),
        json!({"uploadId": upload_id, "partNumber": "1"}),
        json!({"uploadId": "someone-elses", "partNumber": 1}),
        json!({"uploadId": "x".repeat(1025), "partNumber": 1}),
        json!({"partNumber": 1}),
    ] {
        let (status, e) = alice.post(&upload_url, body.clone()).await;
        assert_eq!(
            (status, code(&e)),
            (400, "BAD_REQUEST".into()),
            "{body}: {e}"
        );
    }
    // Over the body limit: 413.
    let big = json!({"uploadId": upload_id, "partNumber": 1, "pad": "x".repeat(70 * 1024)});
    let (status, e) = alice.post(&upload_url, big).await;
    assert_eq!(status, 413, "{e}");
    // A URL over 8 KiB: 414.
    let (status, e) = alice.get(&format!("/v1/images/{}", "a".repeat(9000))).await;
    assert_eq!((status, code(&e)), (414, "URL_TOO_LONG".into()));
    // Unknown images, other users' images.
    let (status, e) = alice
        .get("/v1/images/8d3a3f4e-0000-4000-8000-000000000000")
        .await;
    assert_eq!((status, code(&e)), (404, "NOT_FOUND".into()));
    let (status, e) = alice.get("/v1/images/..%2F..%2Fetc").await;
    assert_eq!(status, 404, "{e}");
    for (method, path) in [
        (Method::GET, format!("/v1/images/{id}")),
        (Method::POST, upload_url.clone()),
        (Method::GET, format!("/v1/images/{id}/upload")),
        (Method::POST, format!("/v1/images/{id}/abort")),
        (Method::DELETE, format!("/v1/images/{id}")),
        (Method::GET, format!("/v1/images/{id}/range")),
    ] {
        let (status, e) = bob
            .call(
                bob.req(method.clone(), &path)
                    .json(&json!({"uploadId": upload_id, "partNumber": 1})),
            )
            .await;
        assert_eq!(
            (status, code(&e)),
            (403, "FORBIDDEN".into()),
            "{method} {path}"
        );
    }
    // Unknown routes and methods.
    let (status, e) = alice.get("/v1/nothing").await;
    assert_eq!((status, code(&e)), (404, "NO_ROUTE".into()));
    let (status, _) = alice.call(alice.req(Method::PUT, "/v1/images")).await;
    assert_eq!(status, 405);
    // Preflight.
    let resp = alice
        .http
        .request(Method::OPTIONS, format!("{}/v1/images", gw.url))
        .header("access-control-request-headers", "x-user-id,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-headers"],
        "x-user-id,content-type"
    );

    // Complete: bad parts, duplicates, parts never uploaded, wrong etags, short middle parts.
    let complete = format!("/v1/images/{id}/complete");
    for parts in [
        json!([]),
        json!([{"partNumber": 0, "etag": "\"a\""}]),
        json!([{"partNumber": 1, "etag": ""}]),
        json!([{"partNumber": 1, "etag": "x".repeat(4097)}]),
        json!([{"partNumber": 1, "etag": "\"a\""}, {"partNumber": 1, "etag": "\"b\""}]),
        json!([{"partNumber": 1, "etag": "\"a\""}]),
    ] {
        let (status, e) = alice
            .post(&complete, json!({"uploadId": upload_id, "parts": parts}))
            .await;
        assert_eq!(status, 400, "{parts}: {e}");
    }
    let data = disk_bytes(PART + 1024, 4);
    let mut parts = alice.upload_parts(&id, &upload_id, &data, PART).await;
    // (A wrong ETag is refused by S3's CompleteMultipartUpload, and by the gateway when S3
    // lists part ETags; s3s-fs does neither, so it is not checked here.)
    // A short part that is not the last one.
    let short = alice
        .upload_parts(&id, &upload_id, &data[..1024], PART)
        .await;
    assert_eq!(short[0]["partNumber"], 1);
    parts[0] = short[0].clone();
    let (status, e) = alice
        .post(&complete, json!({"uploadId": upload_id, "parts": parts}))
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("part size"),
        "{e}"
    );
    let (_, up) = alice.get(&format!("/v1/images/{id}/upload")).await;
    assert_eq!(up["wrongSizeParts"], json!([1]));
    // Uploads over max_image_bytes are refused at completion.
    let parts = alice.upload_parts(&id, &upload_id, &data, PART).await;
    let (status, e) = alice
        .post(&complete, json!({"uploadId": upload_id, "parts": parts}))
        .await;
    assert_eq!((status, code(&e)), (413, "IMAGE_TOO_LARGE".into()), "{e}");

    // A tampered presigned URL is refused by S3 itself.
    let (_, u) = alice
        .post(&upload_url, json!({"uploadId": upload_id, "partNumber": 3}))
        .await;
    let tampered = u["url"]
        .as_str()
        .unwrap()
        .replace("partNumber=3", "partNumber=4");
    let resp = alice
        .http
        .put(tampered)
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // Nothing was lost: the record is still uploading; abort makes it failed, after which the
    // upload routes answer 409.
    let (_, rec) = alice.get(&format!("/v1/images/{id}")).await;
    assert_eq!(rec["state"], "uploading");
    let (status, _) = alice
        .post(&format!("/v1/images/{id}/abort"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, rec) = alice.get(&format!("/v1/images/{id}")).await;
    assert_eq!(rec["state"], "failed");
    let (status, e) = alice
        .post(&upload_url, json!({"uploadId": upload_id, "partNumber": 1}))
        .await;
    assert_eq!((status, code(&e)), (409, "INVALID_STATE".into()));
    let (status, _) = alice.get(&format!("/v1/images/{id}/range")).await;
    assert_eq!(status, 409);
}

async fn concurrent_writers_get_a_conflict(db: Database) {
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let a = aero_gateway::Db::open(&url, 2).await.unwrap();
    let b = aero_gateway::Db::open(&url, 2).await.unwrap();
    assert_eq!(
        a.schema_version().await.unwrap(),
        aero_gateway::db::SCHEMA_VERSION
    );
    let s3 = S3Server::start();
    let gw = start(&s3, settings(&s3, &url)).await;
    let (id, _) = Client::new(&gw.url, "alice").create().await;
    let mut first = a.get(&id).await.unwrap().unwrap();
    let mut second = b.get(&id).await.unwrap().unwrap();
    first.failure_reason = Some("one".into());
    second.failure_reason = Some("two".into());
    a.save(&mut first).await.unwrap();
    let lost = b.save(&mut second).await.unwrap_err();
    assert!(matches!(lost, aero_gateway::DbError::Conflict(_)), "{lost}");
    assert_eq!(
        a.get(&id).await.unwrap().unwrap().failure_reason.as_deref(),
        Some("one")
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(aero_gateway::OPENAPI).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut served: Vec<(String, String)> = aero_gateway::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);

    // And the live server answers each of them (not the unknown-route error) and serves the
    // document itself.
    let s3 = S3Server::start();
    let dir = tempdir();
    let gw = start(
        &s3,
        settings(&s3, &fresh_database(Database::Sqlite, dir.path()).await),
    )
    .await;
    let client = Client::new(&gw.url, "alice");
    for (method, path) in served {
        let path = path
            .replace("{imageId}", "8d3a3f4e-0000-4000-8000-000000000000")
            .replace("{chunkIndex}", "0")
            .replace("{linkId}", "8d3a3f4e-0000-4000-8000-000000000001");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = client.req(method.clone(), &path).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("NO_ROUTE"),
            "{method} {path}: {status} {body}"
        );
    }
    let (status, served_doc) = client.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served_doc, doc);
}
