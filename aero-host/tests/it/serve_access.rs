//! Private images through `serve` (SPEC 5.1, 5.2): with `--lease-keys`, an image whose
//! visibility object says private or shared needs a lease on every route that names it; the
//! matrix of routes × bad credentials answers 401/403 as JSON with CORS headers and never image
//! bytes; good leases work as bearer token, cookie and query parameter; a key rotated out of
//! `signing` still verifies; public images are served as before; tokens never reach the logs.

use crate::support::lease::{tampered, Keys};
use crate::support::serve::*;
use aero_access::visibility::{access_key, to_json};
use aero_access::Visibility;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const ORIGIN: &str = "https://app.example";

/// Every serve route that names image `id` (version `v`): path, and whether it serves image
/// bytes (the meta route serves JSON about the image).
fn routes(id: &str, v: &str) -> Vec<String> {
    let chunk = "00000000.bin";
    vec![
        format!("/v1/images/{id}"),
        format!("/v1/images/{id}/data"),
        format!("/v1/images/{id}/meta"),
        format!("/v1/images/{id}/chunked/manifest.json"),
        format!("/v1/images/{id}/chunked/manifest"),
        format!("/v1/images/{id}/chunked/chunks/{chunk}"),
        format!("/v1/images/{id}/chunked/{v}/manifest.json"),
        format!("/v1/images/{id}/chunked/{v}/manifest"),
        format!("/v1/images/{id}/chunked/{v}/chunks/{chunk}"),
    ]
}

/// Marks image `id` of the fs storage at `root` with `v`, as the gateway does.
fn set_visibility(root: &Path, id: &str, v: Visibility) {
    let path = root.join(access_key("images/", id));
    std::fs::write(path, to_json(v)).unwrap();
}

struct Fixture {
    root: tempfile::TempDir,
    work: tempfile::TempDir,
    storage: String,
    data: Vec<u8>,
    version: String,
    keys: Keys,
    /// A key file whose only key is unknown to the server.
    stranger: Keys,
    /// The key that signed before the rotation (still in the server's `keys`).
    retired: Keys,
}

/// Images `priv` (private), `team` (shared) and `pub` (no visibility object), same content.
fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let storage = format!("fs:{}", root.path().display());
    let src = work.path().join("src.raw");
    let data = make_raw(&src, 2 * 1024 * 1024 + 4096);
    let mut version = String::new();
    for id in ["priv", "team", "pub"] {
        version = publish(&storage, &src, id, 1024 * 1024, &[]);
    }
    set_visibility(root.path(), "priv", Visibility::Private);
    set_visibility(root.path(), "team", Visibility::Shared);
    let keys = Keys::write(
        work.path(),
        "keys.json",
        "k2",
        &[("k1", "a1"), ("k2", "b2")],
    );
    let stranger = Keys::write(work.path(), "stranger.json", "k9", &[("k9", "c3")]);
    let retired = Keys::write(work.path(), "retired.json", "k1", &[("k1", "a1")]);
    Fixture {
        root,
        work,
        storage,
        data,
        version,
        keys,
        stranger,
        retired,
    }
}

fn get(srv: &Server, path: &str, extra: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let url = srv.url(path);
    let mut args = vec!["-H", "Origin: https://app.example"];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[track_caller]
fn assert_refused(answer: &(u16, Vec<(String, String)>, Vec<u8>), status: u16, what: &str) {
    let (got, headers, body) = answer;
    assert_eq!(*got, status, "{what}: {}", String::from_utf8_lossy(body));
    if !what.starts_with("HEAD") {
        let json: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| panic!("{what}: not a JSON error: {} bytes", body.len()));
        let code = if status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert_eq!(json["error"]["code"], code, "{what}");
    }
    assert_eq!(
        hv(headers, "content-type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(
        hv(headers, "access-control-allow-origin"),
        Some(ORIGIN),
        "{what}"
    );
    assert_eq!(
        hv(headers, "access-control-allow-credentials"),
        Some("true"),
        "{what}"
    );
    assert_eq!(
        hv(headers, "cache-control"),
        Some("no-store, no-transform"),
        "{what}"
    );
    assert!(
        hv(headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
        "{what}"
    );
}

#[test]
fn every_route_refuses_bad_credentials_and_serves_good_leases() {
    let f = fixture();
    let srv = Server::start(
        &f.storage,
        &["--cors-origin", ORIGIN, "--lease-keys", &f.keys.arg()],
        &[],
    );
    let now = SystemTime::now();
    let expired = f
        .keys
        .mint_at("priv", None, now - Duration::from_secs(3600));
    let other_image = f.keys.mint("pub", None);
    let other_version = f.keys.mint("priv", Some("v0"));
    let forged = tampered(&f.keys.mint("priv", None));
    let unknown_kid = f.stranger.mint("priv", None);
    let bad: [(&str, Option<&str>, u16); 6] = [
        ("no credentials", None, 401),
        ("expired lease", Some(&expired), 401),
        ("lease for another image", Some(&other_image), 403),
        ("lease for another version", Some(&other_version), 403),
        ("tampered lease", Some(&forged), 401),
        ("unknown kid", Some(&unknown_kid), 401),
    ];
    let good = f.keys.mint("priv", None);
    let auth = format!("Authorization: Bearer {good}");
    let cookie = format!("Cookie: theme=dark; aero_lease={good}");
    let bearer_bad: Vec<String> = bad
        .iter()
        .map(|(_, t, _)| {
            t.map(|t| format!("Authorization: Bearer {t}"))
                .unwrap_or_default()
        })
        .collect();
    for path in routes("priv", &f.version) {
        for ((what, token, status), header) in bad.iter().zip(&bearer_bad) {
            let what = format!("{path} with {what}");
            let args: Vec<&str> = if token.is_some() {
                vec!["-H", header]
            } else {
                vec![]
            };
            assert_refused(&get(&srv, &path, &args), *status, &what);
            let head = get(&srv, &path, &[&args[..], &["-I"]].concat());
            assert_refused(&head, *status, &format!("HEAD {what}"));
            if let Some(t) = token {
                let q = format!("{path}?lease={t}");
                assert_refused(&get(&srv, &q, &[]), *status, &format!("{what} (query)"));
            }
        }
        for (how, args) in [
            ("bearer", vec!["-H", &auth[..]]),
            ("cookie", vec!["-H", &cookie[..]]),
        ] {
            let (status, headers, body) = get(&srv, &path, &args);
            assert_eq!(
                status,
                200,
                "{path} by {how}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(
                hv(&headers, "cache-control"),
                Some("private, no-store, no-transform"),
                "{path}"
            );
            assert_eq!(hv(&headers, "access-control-allow-origin"), Some(ORIGIN));
        }
        let (status, _, _) = get(&srv, &format!("{path}?x=1&lease={good}"), &[]);
        assert_eq!(status, 200, "{path} by query");
    }

    // Exact bytes through each carrier.
    let ranged = ["-H", "Range: bytes=1048000-1049999"];
    let (status, headers, body) = get(
        &srv,
        "/v1/images/priv",
        &[&ranged[..], &["-H", &auth]].concat(),
    );
    assert_eq!(status, 206);
    assert_eq!(body, f.data[1_048_000..1_050_000]);
    assert!(hv(&headers, "cache-control")
        .unwrap()
        .contains("no-store, no-transform"));
    let (_, _, body) = get(
        &srv,
        &format!("/v1/images/priv/chunked/chunks/00000002.bin?lease={good}"),
        &[],
    );
    assert_eq!(body, f.data[2 * 1024 * 1024..]);
    let (_, _, body) = get(&srv, "/v1/images/priv/data", &["-H", &cookie]);
    assert_eq!(body, f.data);

    // A version-limited lease covers its version, on versioned and unversioned routes.
    let pinned = format!(
        "Authorization: Bearer {}",
        f.keys.mint("priv", Some(&f.version))
    );
    for path in routes("priv", &f.version) {
        assert_eq!(
            get(&srv, &path, &["-H", &pinned]).0,
            200,
            "{path} with a version lease"
        );
    }

    // A key rotated out of `signing` (still in `keys`) verifies until its leases expire.
    let old = f.retired.mint("priv", None);
    assert!(old.starts_with("v1.k1."));
    assert_eq!(
        get(
            &srv,
            "/v1/images/priv",
            &["-H", &format!("Authorization: Bearer {old}")]
        )
        .0,
        200
    );
    let old_expired = f
        .retired
        .mint_at("priv", None, now - Duration::from_secs(3600));
    let answer = get(
        &srv,
        "/v1/images/priv",
        &["-H", &format!("Authorization: Bearer {old_expired}")],
    );
    assert_refused(&answer, 401, "expired lease of the rotated-out key");

    // Shared images need a lease too; public ones are served as before, whatever comes along.
    assert_refused(&get(&srv, "/v1/images/team", &[]), 401, "shared image");
    let team = format!("Authorization: Bearer {}", f.keys.mint("team", None));
    assert_eq!(get(&srv, "/v1/images/team", &["-H", &team]).0, 200);
    for path in routes("pub", &f.version) {
        let (status, headers, _) = get(&srv, &path, &[]);
        assert_eq!(status, 200, "{path}");
        let cache = hv(&headers, "cache-control").unwrap();
        assert!(
            cache.starts_with("public") || path.ends_with("/meta"),
            "{path}: {cache}"
        );
        assert_eq!(
            get(&srv, &path, &["-H", &bearer_bad[4]]).0,
            200,
            "{path} ignores a bad lease"
        );
    }

    // The list shows public images only.
    let (_, _, body) = get(&srv, "/v1/images", &["-H", &auth]);
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pub"]);

    // Preflights need no lease (browsers send none).
    let (status, headers, _) = get(
        &srv,
        "/v1/images/priv",
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Access-Control-Request-Method: GET",
            "-H",
            "Access-Control-Request-Headers: range",
        ],
    );
    assert_eq!(status, 204);
    assert_eq!(
        hv(&headers, "access-control-allow-credentials"),
        Some("true")
    );
}

#[test]
fn without_lease_keys_private_images_are_refused_and_public_ones_served() {
    let f = fixture();
    let srv = Server::start(&f.storage, &[], &[]);
    let lease = format!("Authorization: Bearer {}", f.keys.mint("priv", None));
    for path in routes("priv", &f.version) {
        let (status, _, body) = get(&srv, &path, &["-H", &lease]);
        assert_eq!(status, 403, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("--lease-keys"),
            "{path}"
        );
    }
    assert_eq!(get(&srv, "/v1/images/pub", &[]).0, 200);
}

#[test]
fn a_visibility_change_reaches_serve_within_the_cache_ttl() {
    let f = fixture();
    let keys = f.keys.arg();
    let args = [
        "--cors-origin",
        ORIGIN,
        "--cache-ttl-ms",
        "200",
        "--lease-keys",
        &keys,
    ];
    let srv = Server::start(&f.storage, &args, &[]);
    assert_eq!(
        get(&srv, "/v1/images/pub/chunked/manifest.json", &[]).0,
        200
    );
    set_visibility(f.root.path(), "pub", Visibility::Private);
    std::thread::sleep(Duration::from_millis(400));
    let answer = get(&srv, "/v1/images/pub/chunked/manifest.json", &[]);
    assert_refused(&answer, 401, "a newly private image");
    set_visibility(f.root.path(), "priv", Visibility::Public);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(get(&srv, "/v1/images/priv", &[]).0, 200);
}

#[test]
fn a_bad_key_file_stops_serve_with_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("keys.json");
    std::fs::write(&path, r#"{"signing":"k2","keys":{"k1":"00"}}"#).unwrap();
    let root = work.path().display().to_string();
    let out = crate::support::run(&[
        "--storage",
        &format!("fs:{root}"),
        "serve",
        "--listen-addr",
        "127.0.0.1:0",
        "--lease-keys",
        path.to_str().unwrap(),
    ]);
    crate::support::fails_with(&out, &[path.to_str().unwrap(), "1 bytes; at least 32"]);
}

#[test]
fn leases_never_reach_the_logs() {
    let f = fixture();
    let log = f.work.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args([
            "--storage",
            &f.storage,
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--lease-keys",
            &f.keys.arg(),
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let tokens = [
        f.keys.mint("priv", None),
        f.keys
            .mint_at("priv", None, SystemTime::now() - Duration::from_secs(3600)),
        tampered(&f.keys.mint("priv", None)),
        f.stranger.mint("priv", None),
        f.keys.mint("pub", None),
    ];
    for t in &tokens {
        for path in routes("priv", &f.version) {
            let url = format!("{base}{path}");
            curl(&["-H", &format!("Authorization: Bearer {t}"), &url]);
            curl(&["-H", &format!("Cookie: aero_lease={t}"), &url]);
            curl(&[&format!("{url}?lease={t}")]);
        }
    }
    let (_, _, metrics) = curl(&[&format!("{base}/metrics")]);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("request"),
        "the server logged its requests: {logged}"
    );
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("status=\"401\""), "{metrics}");
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        for (name, text) in [("logs", &logged), ("metrics", &metrics)] {
            assert!(
                !text.contains(t.as_str()) && !text.contains(signature),
                "a lease is in the {name}"
            );
        }
    }
    for secret in ["a1".repeat(32), "b2".repeat(32)] {
        assert!(!logged.contains(&secret), "a key is in the logs");
    }
}
