//! Private images through the gateway (SPEC 5.1, 5.2), on SQLite and PostgreSQL against
//! s3s-fs: the gateway half of the matrix (every route naming an image × bad credentials →
//! 401/403 as JSON, never image bytes), visibility and the ACL through the one matrix, share
//! links (token once, hashed, revocable, expiring) redeemed for leases, lease renewal, key
//! rotation, and the limits on links and ACL size.

#[macro_use]
mod support;

use aero_access::share::TokenHash;
use aero_access::{LeaseKeys, Visibility};
use aero_gateway::{Db, Settings};
use aero_test_support::{sha256, S3Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use support::*;

on_both_databases!(
    every_route_refuses_bad_credentials_without_bytes,
    visibility_acl_and_share_links_follow_the_matrix,
    a_rotated_out_key_works_until_its_leases_expire,
);

/// A key file's contents: `signing` signs, each `(kid, byte)` is 32 bytes of that byte.
fn keys(signing: &str, with: &[(&str, &str)]) -> LeaseKeys {
    let map: serde_json::Map<String, Value> = with
        .iter()
        .map(|(kid, byte)| (kid.to_string(), byte.repeat(32).into()))
        .collect();
    let text = json!({"signing": signing, "keys": map}).to_string();
    LeaseKeys::from_json(text.as_bytes()).unwrap()
}

/// A lease for `image` minted at `at` for a minute.
fn lease_at(k: &LeaseKeys, image: &str, at: SystemTime) -> String {
    k.mint(image, None, Duration::from_secs(60), at)
        .unwrap()
        .token
}

/// `token` with one character of its claims changed.
fn tampered(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let first = if parts[2].starts_with('e') { "f" } else { "e" };
    parts[2].replace_range(0..1, first);
    parts.join(".")
}

/// A gateway with lease keys, and alice's ready image of `data`.
struct World {
    _s3: S3Server,
    _dir: tempfile::TempDir,
    gw: Running,
    database: String,
    s3: aero_gateway::S3Settings,
    alice: Client,
    id: String,
    data: Vec<u8>,
}

async fn world(
    db: Database,
    k: LeaseKeys,
    tune: impl FnOnce(&mut aero_gateway::Settings),
) -> World {
    let s3 = S3Server::start();
    let dir = tempdir();
    let database = fresh_database(db, dir.path()).await;
    let mut s = settings(&s3, &database);
    s.lease_keys = Some(k);
    tune(&mut s);
    let s3_settings = s.s3.clone();
    let gw = start(&s3, s).await;
    let alice = Client::new(&gw.url, "alice");
    let data = disk_bytes(2 * 1024 * 1024 + 4096, 7);
    let id = alice.upload(&data, PART).await;
    assert_eq!(alice.settled(&id, WAIT).await["state"], "ready");
    World {
        _s3: s3,
        _dir: dir,
        gw,
        database,
        s3: s3_settings,
        alice,
        id,
        data,
    }
}

/// A request with no identity at all.
fn anonymous(c: &Client, method: Method, path: &str) -> reqwest::RequestBuilder {
    c.http.request(method, format!("{}{path}", c.base))
}

/// How a request presents its (bad) credential.
#[derive(Clone)]
enum Cred {
    None,
    OtherUser,
    Lease(&'static str, String),
    Link(&'static str, String),
}

impl std::fmt::Debug for Cred {
    /// The case, not the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cred::None => f.write_str("no credentials"),
            Cred::OtherUser => f.write_str("another user"),
            Cred::Lease(case, _) => write!(f, "{case} lease"),
            Cred::Link(case, _) => write!(f, "{case} share link"),
        }
    }
}

/// Every gateway route naming image `id`: method, path, body, and whether it takes a lease.
fn routes(id: &str, link: &str) -> Vec<(Method, String, Option<Value>, bool)> {
    let p = |s: &str| format!("/v1/images/{id}{s}");
    vec![
        (Method::GET, p(""), None, false),
        (
            Method::PATCH,
            p(""),
            Some(json!({"visibility": "public"})),
            false,
        ),
        (Method::DELETE, p(""), None, false),
        (
            Method::POST,
            p("/upload-url"),
            Some(json!({"uploadId": "u", "partNumber": 1})),
            false,
        ),
        (Method::GET, p("/upload"), None, false),
        (
            Method::POST,
            p("/complete"),
            Some(json!({"uploadId": "u", "parts": [{"partNumber": 1, "etag": "e"}]})),
            false,
        ),
        (Method::POST, p("/abort"), None, false),
        (Method::GET, p("/metadata"), None, false),
        (Method::GET, p("/stream-url"), None, false),
        (Method::GET, p("/range"), None, true),
        (Method::HEAD, p("/range"), None, true),
        (Method::GET, p("/chunked/manifest"), None, true),
        (Method::HEAD, p("/chunked/manifest"), None, true),
        (Method::GET, p("/chunked/chunks/0"), None, true),
        (Method::HEAD, p("/chunked/chunks/00000000.bin"), None, true),
        (Method::POST, p("/share-links"), Some(json!({})), false),
        (Method::GET, p("/share-links"), None, false),
        (
            Method::DELETE,
            p(&format!("/share-links/{link}")),
            None,
            false,
        ),
        (Method::POST, p("/lease"), None, true),
    ]
}

async fn every_route_refuses_bad_credentials_without_bytes(db: Database) {
    let k = keys("k1", &[("k1", "a1")]);
    let w = world(db, k.clone(), |_| {}).await;
    let (alice, id) = (&w.alice, &w.id);

    // A revoked link and an expired link of this very image.
    let (status, made) = alice
        .post(&format!("/v1/images/{id}/share-links"), json!({}))
        .await;
    assert_eq!(status, 201, "{made}");
    let revoked = made["token"].as_str().unwrap().to_string();
    let link_id = made["linkId"].as_str().unwrap().to_string();
    let (status, _) = alice
        .call(alice.req(
            Method::DELETE,
            &format!("/v1/images/{id}/share-links/{link_id}"),
        ))
        .await;
    assert_eq!(status, 200);
    let (status, made) = alice
        .post(
            &format!("/v1/images/{id}/share-links"),
            json!({"expiresInSeconds": 1}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let expired_link = made["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Links stop at once even while the image is shared.
    let (status, _) = alice
        .call(
            alice
                .req(Method::PATCH, &format!("/v1/images/{id}"))
                .json(&json!({"visibility": "shared"})),
        )
        .await;
    assert_eq!(status, 200);

    let now = SystemTime::now();
    let creds = [
        Cred::None,
        Cred::OtherUser,
        Cred::Lease("expired", lease_at(&k, id, now - Duration::from_secs(120))),
        Cred::Lease("other image", lease_at(&k, "another-image", now)),
        Cred::Lease("tampered", tampered(&lease_at(&k, id, now))),
        Cred::Lease(
            "unknown kid",
            lease_at(&keys("k9", &[("k9", "c3")]), id, now),
        ),
        Cred::Link("revoked", revoked),
        Cred::Link("expired", expired_link),
    ];
    let other = Client::new(&w.gw.url, "mallory");
    let mut checked = 0;
    for (method, path, body, takes_lease) in routes(id, &link_id) {
        for cred in &creds {
            let mut req = match cred {
                Cred::OtherUser => other.req(method.clone(), &path),
                _ => anonymous(alice, method.clone(), &path),
            };
            let is_lease_route = path.ends_with("/lease");
            match cred {
                Cred::Lease(_, token) => req = req.bearer_auth(token),
                Cred::Link(_, token) if is_lease_route => {
                    req = req.json(&json!({"shareToken": token}))
                }
                Cred::Link(_, token) => req = req.bearer_auth(token),
                _ => {}
            }
            if let (Some(b), false) = (&body, matches!(cred, Cred::Link(..)) && is_lease_route) {
                req = req.json(b);
            }
            let want = match cred {
                Cred::OtherUser => 403,
                Cred::Lease("other image", _) if takes_lease => 403,
                _ => 401,
            };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(status, want, "{method} {path} with {cred:?}: {bytes:?}");
            assert!(headers.contains_key("access-control-allow-origin"));
            if method == Method::HEAD {
                assert!(bytes.is_empty());
            } else {
                let err: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| panic!("{method} {path} {cred:?}: not JSON"));
                let code = err["error"]["code"].as_str().unwrap();
                assert!(["UNAUTH", "FORBIDDEN"].contains(&code), "{code}");
                assert!(bytes.len() < 512, "{method} {path}: {} bytes", bytes.len());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 19 * 8);

    // The list is the caller's own images; without an identity it is 401.
    let (status, _) = alice
        .call(anonymous(alice, Method::GET, "/v1/images"))
        .await;
    assert_eq!(status, 401);
    let (status, list) = other.get("/v1/images").await;
    assert_eq!((status, list["images"].as_array().unwrap().len()), (200, 0));

    // Nothing above changed the image: the owner still reads it whole.
    let (status, _, body) = alice
        .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/range")))
        .await;
    assert_eq!((status, sha256(&body)), (200, sha256(&w.data)));
}

/// A lease from the gateway: (status, body, Cache-Control).
async fn ask_lease(req: reqwest::RequestBuilder) -> (u16, Value, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, resp.json().await.unwrap_or(Value::Null), cache)
}

/// The concatenated chunks of image `id` read with `lease` as a query parameter, as relative
/// chunk URLs carry it.
async fn read_chunks(c: &Client, id: &str, lease: &str) -> Vec<u8> {
    let url = |p: &str| format!("{}/v1/images/{id}/chunked/{p}?lease={lease}", c.base);
    let manifest: Value = c
        .http
        .get(url("manifest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for i in 0..manifest["chunkCount"].as_u64().unwrap() {
        let resp = c
            .http
            .get(url(&format!("chunks/{i:08}.bin")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        out.extend_from_slice(&resp.bytes().await.unwrap());
    }
    out
}

async fn visibility_acl_and_share_links_follow_the_matrix(db: Database) {
    let k = keys("k1", &[("k1", "a1")]);
    let w = world(db, k.clone(), |s| {
        s.max_share_links = 2;
        s.max_acl_users = 2;
    })
    .await;
    let (alice, id) = (&w.alice, w.id.clone());
    let bob = Client::new(&w.gw.url, "bob");
    let carol = Client::new(&w.gw.url, "carol");
    let storage = storage_of(&w.s3);
    let visibility = || aero_access::visibility::read(&storage, "images/", &id);
    let patch = |c: &Client, body: Value| {
        let req = c
            .req(Method::PATCH, &format!("/v1/images/{id}"))
            .json(&body);
        let c = c.clone();
        async move { c.call(req).await }
    };

    // New images are private, in the record and in the object serve reads.
    let (_, rec) = alice.get(&format!("/v1/images/{id}")).await;
    assert_eq!(rec["visibility"], "private");
    assert_eq!(visibility().await.unwrap(), Some(Visibility::Private));

    // The owner gets a lease; it reads the bytes as bearer, cookie and query parameter.
    let (status, lease, cache) =
        ask_lease(alice.req(Method::POST, &format!("/v1/images/{id}/lease"))).await;
    assert_eq!(status, 200, "{lease}");
    assert_eq!(cache, "no-store");
    let token = lease["lease"].as_str().unwrap().to_string();
    assert!(token.starts_with("v1.k1."));
    let expires =
        chrono::DateTime::parse_from_rfc3339(lease["expiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((290..=301).contains(&ttl), "{ttl}");
    let range = format!("{}/v1/images/{id}/range", alice.base);
    for req in [
        alice.http.get(&range).bearer_auth(&token),
        alice
            .http
            .get(&range)
            .header("cookie", format!("aero_lease={token}")),
        alice.http.get(format!("{range}?lease={token}")),
    ] {
        let (status, _, body) = alice.bytes(req).await;
        assert_eq!((status, sha256(&body)), (200, sha256(&w.data)));
    }
    assert_eq!(read_chunks(alice, &id, &token).await, w.data);

    // Private: bob may do nothing, not even read.
    assert_eq!(bob.get(&format!("/v1/images/{id}")).await.0, 403);
    assert_eq!(
        bob.post(&format!("/v1/images/{id}/lease"), json!({}))
            .await
            .0,
        403
    );

    // Bad PATCH bodies are named.
    for (body, needle) in [
        (json!({}), "nothing to change"),
        (json!({"visibility": "secret"}), "secret"),
        (
            json!({"acl": [{"userId": "bob", "access": "admin"}]}),
            "admin",
        ),
        (
            json!({"acl": [{"userId": "alice", "access": "read"}]}),
            "owner",
        ),
        (
            json!({"acl": [{"userId": "bob", "access": "read"}, {"userId": "bob", "access": "write"}]}),
            "twice",
        ),
        (
            json!({"acl": [{"userId": "a", "access": "read"}, {"userId": "b", "access": "read"}, {"userId": "c", "access": "read"}]}),
            "limit",
        ),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, err) = patch(alice, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{err}"
        );
    }

    // Shared with bob (read) and carol (read+write).
    let (status, done) = patch(
        alice,
        json!({"visibility": "shared", "acl": [{"userId": "bob", "access": "read"}, {"userId": "carol", "access": "write"}]}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["acl"].as_array().unwrap().len(), 2);
    assert_eq!(visibility().await.unwrap(), Some(Visibility::Shared));
    for c in [&bob, &carol] {
        assert_eq!(c.get(&format!("/v1/images/{id}")).await.0, 200);
        assert_eq!(c.get(&format!("/v1/images/{id}/stream-url")).await.0, 200);
        let (status, lease) = c.post(&format!("/v1/images/{id}/lease"), json!({})).await;
        assert_eq!(status, 200, "{lease}");
        // Neither may share, delete or upload.
        assert_eq!(patch(c, json!({"visibility": "public"})).await.0, 403);
        assert_eq!(
            c.post(&format!("/v1/images/{id}/share-links"), json!({}))
                .await
                .0,
            403
        );
        assert_eq!(
            c.call(c.req(Method::DELETE, &format!("/v1/images/{id}")))
                .await
                .0,
            403
        );
        assert_eq!(
            c.post(&format!("/v1/images/{id}/abort"), json!({})).await.0,
            403
        );
    }
    assert_eq!(
        Client::new(&w.gw.url, "mallory")
            .get(&format!("/v1/images/{id}"))
            .await
            .0,
        403
    );

    // Share links: the token once (≥ 128 bits), only its sha256 stored, never listed.
    let (status, link) = alice
        .post(&format!("/v1/images/{id}/share-links"), json!({}))
        .await;
    assert_eq!(status, 201, "{link}");
    let share = link["token"].as_str().unwrap().to_string();
    assert!(aero_access::share::token_form_ok(&share));
    let link_id = link["linkId"].as_str().unwrap().to_string();
    let (status, listed) = alice.get(&format!("/v1/images/{id}/share-links")).await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains(&share));
    assert_eq!(listed["links"][0]["linkId"], link_id.as_str());
    assert_eq!(listed["links"][0]["revoked"], false);
    let stored = Db::open(&w.database, 1).await.unwrap();
    let row = stored.link(&link_id).await.unwrap().unwrap();
    assert_eq!(row.token_hash, TokenHash::of(&share));
    assert_eq!(row.created_by, "alice");

    // The limit of live links holds.
    let (status, second) = alice
        .post(
            &format!("/v1/images/{id}/share-links"),
            json!({"expiresInSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    let (status, third) = alice
        .post(&format!("/v1/images/{id}/share-links"), json!({}))
        .await;
    assert_eq!(status, 409, "{third}");
    assert_eq!(third["error"]["code"], "LIMIT_REACHED");
    for bad in [json!({"expiresInSeconds": 0}), json!({"expiresIn": 5})] {
        assert_eq!(
            alice
                .post(&format!("/v1/images/{id}/share-links"), bad)
                .await
                .0,
            400
        );
    }

    // Redeeming the link gives a lease (no-store) that reads the chunks; it renews by itself.
    let stranger = Client::new(&w.gw.url, "");
    let redeem = |token: &str| {
        anonymous(&stranger, Method::POST, &format!("/v1/images/{id}/lease"))
            .json(&json!({"shareToken": token}))
    };
    let (status, got, cache) = ask_lease(redeem(&share)).await;
    assert_eq!((status, cache.as_str()), (200, "no-store"), "{got}");
    let link_lease = got["lease"].as_str().unwrap().to_string();
    assert_eq!(read_chunks(&stranger, &id, &link_lease).await, w.data);
    let renew = |lease: &str| {
        anonymous(&stranger, Method::POST, &format!("/v1/images/{id}/lease")).bearer_auth(lease)
    };
    let (status, renewed, _) = ask_lease(renew(&link_lease)).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        k.verify(renewed["lease"].as_str().unwrap(), SystemTime::now())
            .unwrap()
            .subject
            .as_deref(),
        Some(format!("link:{link_id}").as_str())
    );
    // A malformed or unknown token is refused alike.
    for bad in [
        "x".to_string(),
        aero_access::share::ShareToken::generate()
            .unwrap()
            .as_str()
            .to_string(),
    ] {
        assert_eq!(ask_lease(redeem(&bad)).await.0, 401);
    }

    // Private again: every share is suspended at once (link, ACL, renewals); the owner goes on.
    assert_eq!(patch(alice, json!({"visibility": "private"})).await.0, 200);
    assert_eq!(visibility().await.unwrap(), Some(Visibility::Private));
    assert_eq!(ask_lease(redeem(&share)).await.0, 403);
    assert_eq!(ask_lease(renew(&link_lease)).await.0, 403);
    assert_eq!(bob.get(&format!("/v1/images/{id}")).await.0, 403);
    assert_eq!(
        ask_lease(alice.req(Method::POST, &format!("/v1/images/{id}/lease")))
            .await
            .0,
        200
    );

    // Public: anyone reads and gets a lease; nobody but the owner manages.
    assert_eq!(patch(alice, json!({"visibility": "public"})).await.0, 200);
    assert_eq!(visibility().await.unwrap(), Some(Visibility::Public));
    let mallory = Client::new(&w.gw.url, "mallory");
    assert_eq!(
        mallory.get(&format!("/v1/images/{id}/metadata")).await.0,
        200
    );
    assert_eq!(
        mallory
            .post(&format!("/v1/images/{id}/lease"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        patch(&mallory, json!({"visibility": "private"})).await.0,
        403
    );
    // The data plane needs no identity at all for a public image.
    let (status, _, body) = alice
        .bytes(anonymous(
            alice,
            Method::GET,
            &format!("/v1/images/{id}/range"),
        ))
        .await;
    assert_eq!((status, sha256(&body)), (200, sha256(&w.data)));

    // Revoking a link ends redemption and renewal at once; revoking twice is fine.
    assert_eq!(patch(alice, json!({"visibility": "shared"})).await.0, 200);
    assert_eq!(ask_lease(redeem(&share)).await.0, 200);
    let revoke = format!("/v1/images/{id}/share-links/{link_id}");
    for _ in 0..2 {
        let (status, body) = alice.call(alice.req(Method::DELETE, &revoke)).await;
        assert_eq!((status, body["revoked"].clone()), (200, json!(true)));
    }
    assert_eq!(ask_lease(redeem(&share)).await.0, 401);
    assert_eq!(ask_lease(renew(&link_lease)).await.0, 403);
    let (_, listed) = alice.get(&format!("/v1/images/{id}/share-links")).await;
    assert_eq!(listed["links"][0]["revoked"], true);
    assert_eq!(
        alice
            .call(alice.req(Method::DELETE, &format!("/v1/images/{id}/share-links/nope")))
            .await
            .0,
        404
    );
    // With one link revoked, a new one fits under the limit again.
    assert_eq!(
        alice
            .post(&format!("/v1/images/{id}/share-links"), json!({}))
            .await
            .0,
        201
    );

    // An image that is not ready gets no lease.
    let (pending, _) = alice.create().await;
    let (status, err) = alice
        .post(&format!("/v1/images/{pending}/lease"), json!({}))
        .await;
    assert_eq!(status, 409, "{err}");
}

async fn a_rotated_out_key_works_until_its_leases_expire(db: Database) {
    // Before the rotation k1 signs, and leases live 3 s.
    let w = world(db, keys("k1", &[("k1", "a1")]), |s| {
        s.lease_ttl = Duration::from_secs(3)
    })
    .await;
    let id = w.id.clone();
    let (status, old, _) =
        ask_lease(w.alice.req(Method::POST, &format!("/v1/images/{id}/lease"))).await;
    assert_eq!(status, 200, "{old}");
    let old = old["lease"].as_str().unwrap().to_string();
    assert!(old.starts_with("v1.k1."));

    // After: k2 signs, k1 still verifies — on a second instance over the same database.
    let mut s = Settings::new(w.s3.clone());
    s.database = w.database.clone();
    s.lease_keys = Some(keys("k2", &[("k1", "a1"), ("k2", "b2")]));
    let rotated = start_with_storage(s.clone()).await;
    let c = Client::new(&rotated.url, "alice");
    let range = format!("{}/v1/images/{id}/range", rotated.url);
    let (status, _, body) = c.bytes(c.http.get(&range).bearer_auth(&old)).await;
    assert_eq!((status, sha256(&body)), (200, sha256(&w.data)));
    let (status, renewed, _) = ask_lease(
        c.http
            .post(format!("{}/v1/images/{id}/lease", rotated.url))
            .bearer_auth(&old),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert!(renewed["lease"].as_str().unwrap().starts_with("v1.k2."));

    // Once it expires, the old lease is refused, and renewing with it too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _, body) = c.bytes(c.http.get(&range).bearer_auth(&old)).await;
    assert_eq!(status, 401);
    assert!(body.len() < 512);
    let (status, _, _) = ask_lease(
        c.http
            .post(format!("{}/v1/images/{id}/lease", rotated.url))
            .bearer_auth(&old),
    )
    .await;
    assert_eq!(status, 401);

    // With k1 removed from the keys, its leases end at once.
    let fresh = keys("k1", &[("k1", "a1")])
        .mint(&id, None, Duration::from_secs(60), SystemTime::now())
        .unwrap()
        .token;
    s.lease_keys = Some(keys("k2", &[("k2", "b2")]));
    let retired = start_with_storage(s).await;
    let (status, _, _) = c
        .bytes(
            c.http
                .get(format!("{}/v1/images/{id}/range", retired.url))
                .bearer_auth(&fresh),
        )
        .await;
    assert_eq!(status, 401);
    drop(w.gw);
}
