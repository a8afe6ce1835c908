//! `aero-host serve` over real sockets with reqwest and curl, against the `fs` and the `s3`
//! (s3s-fs) backends: every endpoint, Range and conditional logic, headers, CORS, limits.

use crate::support::serve::*;
use aero_plugin_api::backend::opendal::{services, Operator};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

const MIB: usize = 1024 * 1024;

struct Fixture {
    data: Vec<u8>,
    raw: Vec<u8>,
    version: String,
    _dir: tempfile::TempDir,
}

/// Publishes `demo` (3 MiB + 1536 bytes, 1 MiB chunks) and stores a raw image `rawimg`, a
/// private raw image `secret` and a catalog listing both.
async fn setup(storage: &str, op: &Operator, envs: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.raw");
    let data = make_raw(&file, 3 * MIB + 1536);
    let version = publish(storage, &file, "demo", MIB as u64, envs);
    let raw: Vec<u8> = (0..(MIB + 512)).map(|i| (i * 7 % 251) as u8).collect();
    op.write("disks/raw.img", raw.clone()).await.unwrap();
    op.write("disks/secret.img", vec![1u8; 4096]).await.unwrap();
    let catalog = serde_json::json!({"images": [
        {"id": "rawimg", "file": "disks/raw.img", "name": "Raw image", "description": "a raw disk"},
        {"id": "secret", "file": "./disks/secret.img", "name": "Private", "public": false}
    ]});
    op.write("manifest.json", serde_json::to_vec(&catalog).unwrap())
        .await
        .unwrap();
    Fixture {
        data,
        raw,
        version,
        _dir: dir,
    }
}

fn h(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn js(resp: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

async fn req(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = c.request(method, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    req(c, Method::GET, url, headers).await
}

async fn assert_error(resp: reqwest::Response, status: StatusCode) -> HeaderMap {
    assert_eq!(resp.status(), status, "{}", resp.url());
    let headers = resp.headers().clone();
    let body: serde_json::Value = js(resp).await;
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    headers
}

/// A served fixture ([`setup`]) and a running server with `--max-range-bytes 2097152`, on the
/// `fs` or the `s3` (s3s-fs) backend.
struct Served {
    storage: String,
    op: Operator,
    envs: Vec<(&'static str, &'static str)>,
    fx: Fixture,
    srv: Server,
    c: reqwest::Client,
    _root: Option<tempfile::TempDir>,
    _s3: Option<S3>,
}

/// The backend a check runs against.
enum Backend {
    Fs,
    S3,
}

async fn served(backend: Backend) -> Served {
    let (storage, op, envs, root, s3) = match backend {
        Backend::Fs => {
            let root = tempfile::tempdir().unwrap();
            let storage = format!("fs:{}", root.path().display());
            let op = fs_operator(root.path());
            (storage, op, Vec::new(), Some(root), None)
        }
        Backend::S3 => {
            let s3 = S3::start("images-bucket");
            aero_plugin_api::backend::opendal::install_default();
            let op = Operator::new(
                services::S3::default()
                    .endpoint(&s3.endpoint)
                    .bucket("images-bucket")
                    .region("us-east-1")
                    .access_key_id(AK)
                    .secret_access_key(SK),
            )
            .unwrap();
            (
                s3.uri("images-bucket"),
                op,
                S3::env().to_vec(),
                None,
                Some(s3),
            )
        }
    };
    let fx = setup(&storage, &op, &envs).await;
    let srv = Server::start(&storage, &["--max-range-bytes", "2097152"], &envs);
    Served {
        storage,
        op,
        envs,
        fx,
        srv,
        c: reqwest::Client::new(),
        _root: root,
        _s3: s3,
    }
}

/// Runs each named check on both backends, as `<check>::fs` and `<check>::s3`.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fs() {
                super::$check(super::served(super::Backend::Fs).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$check(super::served(super::Backend::S3).await).await;
            }
        }
    )*};
}

on_both_backends!(
    health_readiness_version,
    image_list_and_meta,
    bytes_full_and_head,
    ranges,
    range_errors,
    conditionals,
    chunked_endpoints,
    preflights,
    curl_as_a_second_client,
    metrics_count_requests,
    broken_catalog,
);

/// Health, readiness and version answer.
async fn health_readiness_version(s: Served) {
    let (c, srv) = (&s.c, &s.srv);
    let r = get(c, &srv.url("/health"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = get(c, &srv.url("/healthz"), &[]).await;
    assert_eq!(js(r).await["status"], "ok");
    for p in ["/ready", "/readyz"] {
        let r = get(c, &srv.url(p), &[]).await;
        assert_eq!(r.status(), 200, "{p}");
    }
    let v: serde_json::Value = js(get(c, &srv.url("/version"), &[]).await).await;
    assert!(v["version"].is_string() && v["gitSha"].is_string() && v["builtAt"].is_string());
}

/// The image list and one image's metadata, with their ETags.
async fn image_list_and_meta(s: Served) {
    let (c, srv, fx) = (&s.c, &s.srv, &s.fx);
    let len = fx.data.len();
    let r = get(c, &srv.url("/v1/images"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "cache-control"), "no-cache");
    let list_etag = h(&r, "etag");
    assert!(list_etag.starts_with("\"images-"), "{list_etag}");
    let list: Vec<serde_json::Value> = serde_json::from_value(js(r).await).unwrap();
    let ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["rawimg", "secret", "demo"]);
    assert_eq!(list[0]["size_bytes"], fx.raw.len());
    assert_eq!(list[0]["description"], "a raw disk");
    assert_eq!(list[1]["public"], false);
    assert_eq!(list[2]["size_bytes"], len);
    let r = get(c, &srv.url("/v1/images"), &[("if-none-match", &list_etag)]).await;
    assert_eq!(r.status(), 304);
    let r = get(c, &srv.url("/v1/images/demo/meta"), &[]).await;
    assert_eq!(r.status(), 200);
    let meta_etag = h(&r, "etag");
    let m: serde_json::Value = js(r).await;
    assert_eq!(m["etag"], meta_etag);
    assert_eq!(m["chunked"]["version"], fx.version);
    let r = get(
        c,
        &srv.url("/v1/images/demo/meta"),
        &[("if-none-match", &meta_etag)],
    )
    .await;
    assert_eq!(r.status(), 304);
    assert_error(
        get(c, &srv.url("/v1/images/a%20b/meta"), &[]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        get(c, &srv.url("/v1/images/nope/meta"), &[]).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// The bytes endpoint: full body, HEAD, headers, private responses.
async fn bytes_full_and_head(s: Served) {
    let (c, srv, fx) = (&s.c, &s.srv, &s.fx);
    let len = fx.data.len();
    for path in ["/v1/images/demo", "/v1/images/demo/data"] {
        let r = get(c, &srv.url(path), &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(h(&r, "content-length"), len.to_string());
        assert_eq!(h(&r, "transfer-encoding"), "");
        assert_eq!(h(&r, "accept-ranges"), "bytes");
        assert_eq!(h(&r, "content-encoding"), "identity");
        assert_eq!(h(&r, "x-content-type-options"), "nosniff");
        assert_eq!(h(&r, "cross-origin-resource-policy"), "same-site");
        assert_eq!(h(&r, "access-control-allow-origin"), "*");
        assert_eq!(h(&r, "cache-control"), "public, max-age=3600, no-transform");
        assert_eq!(h(&r, "content-type"), "application/octet-stream");
        assert!(!h(&r, "x-request-id").is_empty());
        assert!(
            r.bytes().await.unwrap() == fx.data[..],
            "{path} body differs"
        );
    }
    let r = req(c, Method::HEAD, &srv.url("/v1/images/demo"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-length"), len.to_string());
    let etag = h(&r, "etag");
    let last_modified = h(&r, "last-modified");
    assert!(!etag.is_empty() && !last_modified.is_empty());
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("authorization", "Bearer x")],
    )
    .await;
    assert_eq!(h(&r, "cache-control"), "private, no-store, no-transform");
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("cookie", "a=b"), ("range", "bytes=0-0")],
    )
    .await;
    assert_eq!(h(&r, "cache-control"), "private, no-store, no-transform");
    let r = get(c, &srv.url("/v1/images/secret"), &[]).await;
    assert_eq!(h(&r, "cache-control"), "private, no-store, no-transform");
    assert_eq!(r.bytes().await.unwrap().len(), 4096);
}

/// Ranges: single, across chunk boundaries, suffix, open, HEAD.
async fn ranges(s: Served) {
    let (c, srv, fx) = (&s.c, &s.srv, &s.fx);
    let len = fx.data.len();
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-99".into(), 0, 99),
        (format!("bytes={}-{}", MIB - 10, MIB + 9), MIB - 10, MIB + 9),
        (
            format!("bytes={}-{}", MIB / 2, 2 * MIB + 100),
            MIB / 2,
            2 * MIB + 100,
        ),
        ("bytes=-100".into(), len - 100, len - 1),
        (format!("bytes={}-", len - 2000), len - 2000, len - 1),
        (
            format!("bytes={}-{}", len - 5, len + 1000),
            len - 5,
            len - 1,
        ),
        ("BYTES = 7 - 7".into(), 7, 7),
    ];
    for (range, s, e) in &cases {
        let r = get(c, &srv.url("/v1/images/demo"), &[("range", range)]).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            h(&r, "content-range"),
            format!("bytes {s}-{e}/{len}"),
            "{range}"
        );
        assert_eq!(h(&r, "content-length"), (e - s + 1).to_string());
        assert_eq!(h(&r, "transfer-encoding"), "");
        assert!(
            r.bytes().await.unwrap() == fx.data[*s..=*e],
            "{range} body differs"
        );
    }
    let r = req(
        c,
        Method::HEAD,
        &srv.url("/v1/images/demo"),
        &[("range", "bytes=10-19")],
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(h(&r, "content-length"), "10");
    let r = get(
        c,
        &srv.url("/v1/images/rawimg"),
        &[("range", "bytes=1000-1999")],
    )
    .await;
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap() == fx.raw[1000..2000]);
}

/// Range errors: 416 with `bytes */N`, 413 for long or many ranges, other units ignored.
async fn range_errors(s: Served) {
    let (c, srv) = (&s.c, &s.srv);
    let len = s.fx.data.len();
    for bad in [
        "bytes=0-1,5-6",
        "bytes=9-1",
        "bytes=abc",
        "bytes=-0",
        "bytes=99999999999999999999999-",
    ] {
        let hdrs = assert_error(
            get(c, &srv.url("/v1/images/demo"), &[("range", bad)]).await,
            StatusCode::RANGE_NOT_SATISFIABLE,
        )
        .await;
        assert_eq!(
            hdrs["content-range"],
            format!("bytes */{len}").as_str(),
            "{bad}"
        );
        assert_eq!(hdrs["cache-control"], "no-store, no-transform");
        assert_eq!(hdrs["access-control-allow-origin"], "*");
    }
    let unsat = format!("bytes={len}-");
    assert_error(
        get(c, &srv.url("/v1/images/demo"), &[("range", &unsat)]).await,
        StatusCode::RANGE_NOT_SATISFIABLE,
    )
    .await;
    assert_error(
        get(
            c,
            &srv.url("/v1/images/demo"),
            &[("range", "bytes=0-3000000")],
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let many = format!("bytes={}", vec!["0-1"; 1001].join(","));
    assert_error(
        get(c, &srv.url("/v1/images/demo"), &[("range", &many)]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let r = get(c, &srv.url("/v1/images/demo"), &[("range", "items=0-5")]).await;
    assert_eq!(r.status(), 200);
}

/// If-Range, If-None-Match and If-Modified-Since.
async fn conditionals(s: Served) {
    let (c, srv) = (&s.c, &s.srv);
    let len = s.fx.data.len();
    let r = req(c, Method::HEAD, &srv.url("/v1/images/demo"), &[]).await;
    let (etag, last_modified) = (h(&r, "etag"), h(&r, "last-modified"));
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("range", "bytes=0-9"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(r.status(), 206);
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), len);
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("range", "bytes=0-9"), ("if-range", &last_modified)],
    )
    .await;
    assert_eq!(r.status(), 206);
    let r = get(c, &srv.url("/v1/images/demo"), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert_eq!(h(&r, "etag"), etag);
    assert_eq!(h(&r, "access-control-allow-origin"), "*");
    let r = req(
        c,
        Method::HEAD,
        &srv.url("/v1/images/demo"),
        &[("if-none-match", &format!("\"zzz\", W/{etag}"))],
    )
    .await;
    assert_eq!(r.status(), 304);
    let future = httpdate::fmt_http_date(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[("if-modified-since", &future)],
    )
    .await;
    assert_eq!(r.status(), 304);
    let r = get(
        c,
        &srv.url("/v1/images/demo"),
        &[
            ("if-modified-since", &future),
            ("if-none-match", "\"nope\""),
            ("range", "bytes=0-0"),
        ],
    )
    .await;
    assert_eq!(r.status(), 206, "If-None-Match wins over If-Modified-Since");
}

/// The manifest and chunk endpoints, current and by version, and bad names.
async fn chunked_endpoints(s: Served) {
    let (c, srv, fx, op) = (&s.c, &s.srv, &s.fx, &s.op);
    let len = fx.data.len();
    let stored = op
        .read(&format!("images/demo/{}/manifest.json", fx.version))
        .await
        .unwrap()
        .to_vec();
    let manifest: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    for path in [
        "/v1/images/demo/chunked/manifest.json".to_string(),
        "/v1/images/demo/chunked/manifest".to_string(),
        format!("/v1/images/demo/chunked/{}/manifest.json", fx.version),
        format!("/v1/images/demo/chunked/{}/manifest", fx.version),
    ] {
        let r = get(c, &srv.url(&path), &[("range", "bytes=0-1")]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(h(&r, "content-type"), "application/json");
        assert_eq!(
            h(&r, "cache-control"),
            "public, max-age=31536000, immutable, no-transform"
        );
        assert_eq!(h(&r, "etag"), format!("\"{}\"", sha256(&stored)));
        assert_eq!(h(&r, "accept-ranges"), "");
        assert_eq!(r.bytes().await.unwrap().to_vec(), stored, "{path}");
    }
    let chunk_count = manifest["chunkCount"].as_u64().unwrap();
    assert_eq!(chunk_count, 4);
    for i in 0..chunk_count as usize {
        let name = format!("{i:08}.bin");
        for path in [
            format!("/v1/images/demo/chunked/chunks/{name}"),
            format!("/v1/images/demo/chunked/{}/chunks/{name}", fx.version),
        ] {
            let r = get(c, &srv.url(&path), &[]).await;
            assert_eq!(r.status(), 200, "{path}");
            let digest = manifest["chunks"][i]["sha256"].as_str().unwrap();
            assert_eq!(h(&r, "etag"), format!("\"{digest}\""));
            assert_eq!(h(&r, "transfer-encoding"), "");
            assert_eq!(h(&r, "content-encoding"), "identity");
            let body = r.bytes().await.unwrap();
            let end = ((i + 1) * MIB).min(len);
            assert!(body == fx.data[i * MIB..end], "{path}");
            assert_eq!(sha256(&body), digest);
            let r = get(
                c,
                &srv.url(&path),
                &[("if-none-match", &format!("\"{digest}\""))],
            )
            .await;
            assert_eq!(r.status(), 304);
        }
    }
    let r = req(
        c,
        Method::HEAD,
        &srv.url("/v1/images/demo/chunked/chunks/00000003.bin"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-length"), (len - 3 * MIB).to_string());
    for bad in [
        "/v1/images/demo/chunked/chunks/00000004.bin",
        "/v1/images/demo/chunked/chunks/0.bin",
        "/v1/images/demo/chunked/chunks/x.bin",
        "/v1/images/demo/chunked/chunks/..%2F..%2Flatest.json",
        "/v1/images/demo/chunked/v9/manifest.json",
        "/v1/images/nope/chunked/manifest.json",
        "/v1/images/nope",
        "/v1/images/a%2Fb",
    ] {
        let hdrs = assert_error(get(c, &srv.url(bad), &[]).await, StatusCode::NOT_FOUND).await;
        assert_eq!(hdrs["access-control-allow-origin"], "*", "{bad}");
    }
}

/// A preflight of the bytes endpoint in wildcard mode.
async fn preflights(s: Served) {
    let (c, srv) = (&s.c, &s.srv);
    let r = req(
        c,
        Method::OPTIONS,
        &srv.url("/v1/images/demo"),
        &[
            ("origin", "https://x.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(h(&r, "access-control-max-age"), "86400");
    assert_eq!(h(&r, "access-control-allow-methods"), "GET, HEAD, OPTIONS");
    assert_eq!(
        h(&r, "vary"),
        "Access-Control-Request-Method, Access-Control-Request-Headers"
    );
}

/// curl as a second client: Range, HEAD, framing.
async fn curl_as_a_second_client(s: Served) {
    let (srv, fx) = (&s.srv, &s.fx);
    let (status, hdrs, body) = curl(&["-r", "100-199", &srv.url("/v1/images/demo")]);
    assert_eq!(status, 206);
    assert_eq!(body, fx.data[100..200]);
    assert_eq!(hv(&hdrs, "content-length"), Some("100"));
    assert_eq!(hv(&hdrs, "transfer-encoding"), None);
    let (status, hdrs, _) = curl(&["-I", &srv.url("/v1/images/rawimg")]);
    assert_eq!(status, 200);
    assert_eq!(
        hv(&hdrs, "content-length"),
        Some(fx.raw.len().to_string().as_str())
    );
    let (status, _, body) = curl(&[&srv.url("/v1/images/demo/chunked/chunks/00000001.bin")]);
    assert_eq!(status, 200);
    assert!(body == fx.data[MIB..2 * MIB]);
}

/// Metrics count what happened.
async fn metrics_count_requests(s: Served) {
    let (c, srv) = (&s.c, &s.srv);
    let r = get(c, &srv.url("/v1/images/demo"), &[("range", "bytes=0-99")]).await;
    assert_eq!(r.status(), 206);
    let r = get(
        c,
        &srv.url("/v1/images/demo/chunked/chunks/00000000.bin"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = get(c, &srv.url("/v1/images/demo"), &[("range", "bytes=abc")]).await;
    assert_eq!(r.status(), 416);
    let text = get(c, &srv.url("/metrics"), &[])
        .await
        .text()
        .await
        .unwrap();
    for family in [
        "aero_storage_server_build_info{",
        "http_requests_total{route=\"/v1/images/:image_id\",method=\"GET\",status=\"206\"}",
        "http_request_duration_seconds_bucket{route=\"/v1/images/:image_id/chunked/chunks/:chunk_name\"",
        "image_bytes_served_total{image_id=\"demo\"}",
        "range_requests_total{result=\"invalid\"}",
        "store_errors_total{kind=\"manifest\"} 0",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
}

/// A broken catalog makes readiness fail and catalog images 500.
async fn broken_catalog(s: Served) {
    let (c, op) = (&s.c, &s.op);
    let (storage, envs) = (s.storage.as_str(), s.envs.as_slice());
    op.write("manifest.json", "{not json").await.unwrap();
    let srv2 = Server::start(storage, &[], envs);
    let r = get(c, &srv2.url("/readyz"), &[]).await;
    assert_eq!(r.status(), 503);
    assert_error(
        get(c, &srv2.url("/v1/images/rawimg"), &[]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
}

fn fs_operator(root: &std::path::Path) -> Operator {
    Operator::new(services::Fs::default().root(root.to_str().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allowlist_range_only_and_metrics_auth() {
    let root = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let file = root.path().join("src.raw");
    let data = make_raw(&file, MIB);
    publish(&storage, &file, "disk", 65536, &[]);
    let srv = Server::start(
        &storage,
        &[
            "--cors-origin",
            "https://app.example,https://other.example/",
            "--require-range",
            "--metrics-auth-token",
            "s3cret",
            "--cross-origin-resource-policy",
            "cross-origin",
        ],
        &[("AERO_STORAGE_CORS_PREFLIGHT_MAX_AGE_SECS", "600")],
    );
    let c = reqwest::Client::new();
    let url = srv.url("/v1/images/disk");

    let r = get(
        &c,
        &url,
        &[("origin", "https://APP.example"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(h(&r, "access-control-allow-origin"), "https://APP.example");
    assert_eq!(h(&r, "access-control-allow-credentials"), "true");
    assert_eq!(h(&r, "vary"), "Origin");
    assert_eq!(h(&r, "cross-origin-resource-policy"), "cross-origin");
    assert!(h(&r, "access-control-expose-headers").contains("Content-Range"));
    let r = get(
        &c,
        &url,
        &[("origin", "https://evil.example"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(h(&r, "access-control-allow-origin"), "");
    assert_eq!(h(&r, "access-control-expose-headers"), "");
    let r = req(
        &c,
        Method::OPTIONS,
        &url,
        &[
            ("origin", "https://other.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "range"),
        ],
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(h(&r, "access-control-max-age"), "600");
    assert_eq!(h(&r, "access-control-allow-credentials"), "true");
    assert!(h(&r, "access-control-allow-headers").contains("Range"));
    assert_eq!(
        h(&r, "vary"),
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    );
    let r = req(
        &c,
        Method::OPTIONS,
        &url,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(h(&r, "access-control-allow-methods"), "");

    // Range-only mode.
    let hdrs = assert_error(
        get(&c, &url, &[("origin", "https://app.example")]).await,
        StatusCode::RANGE_NOT_SATISFIABLE,
    )
    .await;
    assert_eq!(
        hdrs["content-range"],
        format!("bytes */{}", data.len()).as_str()
    );
    assert_eq!(hdrs["access-control-allow-origin"], "https://app.example");
    let r = req(&c, Method::HEAD, &url, &[]).await;
    assert_eq!(r.status(), 200);
    assert_error(
        get(
            &c,
            &url,
            &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
        )
        .await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    let r = get(&c, &url, &[("range", "bytes=10-19")]).await;
    assert!(r.bytes().await.unwrap() == data[10..20]);

    // Metrics auth.
    let r = get(&c, &srv.url("/metrics"), &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(h(&r, "www-authenticate"), "Bearer");
    assert_eq!(
        get(
            &c,
            &srv.url("/metrics"),
            &[("authorization", "Bearer nope")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get(
            &c,
            &srv.url("/metrics"),
            &[("authorization", "bearer s3cret")]
        )
        .await
        .status(),
        200
    );

    // Disabled metrics: route absent.
    let srv2 = Server::start(&storage, &["--disable-metrics"], &[]);
    assert_eq!(get(&c, &srv2.url("/metrics"), &[]).await.status(), 404);
}

#[test]
fn run_config_serves_after_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.raw");
    let data = make_raw(&file, 256 * 1024);
    let port = free_port();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[storage]\ntype = \"fs\"\nroot = \"out\"\n\n[[publish]]\nfile = \"d.raw\"\nprefix = \"images/cfg/\"\ncompute_version = \"sha256\"\npublish_latest = true\nchunk_size = 65536\n\n[serve]\nlisten_addr = \"127.0.0.1:{port}\"\nmax_range_bytes = 1000\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("run")
        .arg(dir.path().join("c.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/images/cfg");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (status, _, body) = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break curl(&["-r", "0-99", &url]);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run did not start serving"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status, 206);
    assert_eq!(body, data[..100]);
    let (status, _, _) = curl(&["-r", "0-1000", &url]);
    assert_eq!(status, 413, "[serve] max_range_bytes applies");
    let _ = child.kill();
    let _ = child.wait();
}
