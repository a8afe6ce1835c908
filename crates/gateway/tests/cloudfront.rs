//! `stream-url` and the chunked routes with CloudFront (SPEC 4.5, 4.7, 4.8), through a real
//! gateway: signed cookies (JSON and `Set-Cookie`) and signed URLs for an RSA key (SHA-1) and
//! an ECDSA P-256 key (SHA-256), each signature verified independently by `openssl dgst
//! -verify` against the public key; the 307 redirects of the chunked routes; a partial
//! configuration answered 500 `MISCONFIG`.

mod support;

use aero_access::cloudfront::CloudFront;
use aero_test_support::openssl::{cf_decode, keypair, openssl_verifies, query};
use aero_test_support::S3Server;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const DOMAIN: &str = "d111.cloudfront.net";
const KEY_PAIR: &str = "K2JCJMDEHXQW5F";

/// The canned policy CloudFront rebuilds for a signed URL.
fn canned(url: &str, expires: &str) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// Whether the signed URL `signed` verifies with openssl against `public`.
fn url_verifies(dir: &Path, public: &Path, digest: &str, signed: &str) -> bool {
    let (base, _) = signed.split_once('?').unwrap();
    let q = query(signed);
    assert_eq!(q["Key-Pair-Id"], KEY_PAIR);
    assert_eq!(
        q.get("Hash-Algorithm").map(String::as_str),
        (digest == "sha256").then_some("SHA256")
    );
    let policy = canned(base, &q["Expires"]);
    openssl_verifies(
        dir,
        public,
        digest,
        policy.as_bytes(),
        &cf_decode(&q["Signature"]),
    )
}

fn cloudfront(
    values: &[(&str, String)],
) -> Result<Option<Arc<CloudFront>>, aero_access::cloudfront::CloudFrontError> {
    let map: HashMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    CloudFront::from_settings(&|n| map.get(n).cloned()).map(|c| c.map(Arc::new))
}

/// A client that does not follow redirects.
fn no_redirects(base: &str, user: &str) -> Client {
    Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: base.into(),
        user: user.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_url_and_redirects_are_signed_for_both_key_types() {
    let s3 = S3Server::start();
    let dir = tempdir();
    let database = fresh_database(Database::Sqlite, dir.path()).await;
    let (id, version) = {
        let gw = start(&s3, settings(&s3, &database)).await;
        let alice = Client::new(&gw.url, "alice");
        let id = alice
            .upload(&disk_bytes(1024 * 1024 + 512, 3), 5 * 1024 * 1024)
            .await;
        let rec = alice.settled(&id, Duration::from_secs(120)).await;
        assert_eq!(rec["state"], "ready");
        (id, rec["version"].as_str().unwrap().to_string())
    };
    let disk = format!("https://{DOMAIN}/images/alice/{id}/{version}/disk.img");
    let manifest_key = format!("https://{DOMAIN}/images/{id}/{version}/manifest.json");

    for (kind, digest) in [("rsa", "sha1"), ("ec", "sha256")] {
        let (key, public) = keypair(dir.path(), kind);
        for mode in ["cookie", "url"] {
            let mut s = settings(&s3, &database);
            s.cloudfront = cloudfront(&[
                ("CLOUDFRONT_DOMAIN", DOMAIN.into()),
                ("CLOUDFRONT_KEY_PAIR_ID", KEY_PAIR.into()),
                ("CLOUDFRONT_PRIVATE_KEY_PEM", key.display().to_string()),
                ("CLOUDFRONT_AUTH_MODE", mode.into()),
                ("CLOUDFRONT_SIGNED_TTL_SECONDS", "600".into()),
            ]);
            let gw = start(&s3, s).await;
            let alice = no_redirects(&gw.url, "alice");
            let resp = alice
                .req(Method::GET, &format!("/v1/images/{id}/stream-url"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(resp.headers()["cache-control"], "no-store");
            let set_cookies: Vec<String> = resp
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let body: Value = resp.json().await.unwrap();
            let auth = &body["auth"];
            let manifest_url = body["chunked"]["manifestUrl"].as_str().unwrap().to_string();
            if mode == "cookie" {
                assert_eq!(body["url"], disk.as_str());
                assert_eq!(auth["type"], "cookie");
                assert_eq!(manifest_url, manifest_key);
                let cookies = auth["cookies"].as_array().unwrap();
                assert_eq!(cookies.len(), if kind == "ec" { 4 } else { 3 });
                assert_eq!(set_cookies.len(), cookies.len());
                let value = |name: &str| {
                    cookies.iter().find(|c| c["name"] == name).unwrap()["value"]
                        .as_str()
                        .unwrap()
                        .to_string()
                };
                for c in cookies {
                    let attributes: Vec<&str> = c["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap())
                        .collect();
                    assert_eq!(
                        attributes[..4],
                        ["Path=/images", "Secure", "HttpOnly", "SameSite=None"]
                    );
                    assert!(attributes[4].starts_with("Expires="), "{attributes:?}");
                    let header = format!(
                        "{}={}; {}",
                        c["name"].as_str().unwrap(),
                        c["value"].as_str().unwrap(),
                        attributes.join("; ")
                    );
                    assert!(
                        set_cookies.contains(&header),
                        "{header} not in {set_cookies:?}"
                    );
                }
                let policy = cf_decode(&value("CloudFront-Policy"));
                let parsed: Value = serde_json::from_slice(&policy).unwrap();
                assert_eq!(
                    parsed["Statement"][0]["Resource"],
                    format!("https://{DOMAIN}/images/alice/{id}/{version}/*")
                );
                assert!(
                    openssl_verifies(
                        dir.path(),
                        &public,
                        digest,
                        &policy,
                        &cf_decode(&value("CloudFront-Signature"))
                    ),
                    "{kind} cookies"
                );
                assert_eq!(value("CloudFront-Key-Pair-Id"), KEY_PAIR);
            } else {
                assert_eq!(auth["type"], "url");
                assert!(set_cookies.is_empty());
                let url = body["url"].as_str().unwrap();
                assert!(url.starts_with(&format!("{disk}?Expires=")), "{url}");
                assert!(url_verifies(dir.path(), &public, digest, url), "{kind} URL");
                assert_eq!(
                    manifest_url,
                    format!("{}/v1/images/{id}/chunked/manifest", gw.url)
                );
            }
            let expires =
                chrono::DateTime::parse_from_rfc3339(auth["expiresAt"].as_str().unwrap()).unwrap();
            let ttl = expires.timestamp() - chrono::Utc::now().timestamp();
            assert!((590..=601).contains(&ttl), "{ttl}");

            // The chunked routes redirect (307, no-store) to CloudFront, signed in URL mode.
            for (route, object) in [
                ("chunked/manifest", "manifest.json"),
                ("chunked/chunks/0", "chunks/00000000.bin"),
            ] {
                for method in [Method::GET, Method::HEAD] {
                    let resp = alice
                        .req(method.clone(), &format!("/v1/images/{id}/{route}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 307, "{method} {route}");
                    assert_eq!(resp.headers()["cache-control"], "no-store");
                    let location = resp.headers()["location"].to_str().unwrap();
                    let stable = format!("https://{DOMAIN}/images/{id}/{version}/{object}");
                    if mode == "cookie" {
                        assert_eq!(location, stable);
                    } else {
                        assert!(
                            location.starts_with(&format!("{stable}?Expires=")),
                            "{location}"
                        );
                        assert!(
                            url_verifies(dir.path(), &public, digest, location),
                            "{kind} redirect"
                        );
                    }
                }
            }
            // Authorization comes first: another user gets 403 and no location.
            let mallory = no_redirects(&gw.url, "mallory");
            let resp = mallory
                .req(Method::GET, &format!("/v1/images/{id}/chunked/manifest"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 403);
            assert!(resp.headers().get("location").is_none());
        }
    }

    // A partial configuration: 500 MISCONFIG on stream-url and the chunked routes.
    let mut s = settings(&s3, &database);
    s.cloudfront = cloudfront(&[("CLOUDFRONT_DOMAIN", DOMAIN.into())]);
    assert!(s.cloudfront.is_err());
    let gw = start(&s3, s).await;
    let alice = no_redirects(&gw.url, "alice");
    for path in ["stream-url", "chunked/manifest", "chunked/chunks/0"] {
        let (status, err) = alice.get(&format!("/v1/images/{id}/{path}")).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(err["error"]["code"], "MISCONFIG");
        assert_eq!(err["error"]["message"], "Internal Server Error");
    }
}
