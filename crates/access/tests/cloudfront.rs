//! CloudFront signatures checked independently: `openssl dgst -verify` against the public key,
//! for an RSA key (SHA-1) and an ECDSA P-256 key (SHA-256), on signed URLs (the canned policy
//! rebuilt here from the URL, as CloudFront does) and signed cookies (the policy decoded from
//! the cookie).

use aero_access::cloudfront::{AuthMode, CloudFront, SigningAlgorithm};
use aero_test_support::openssl::{cf_decode, keypair, openssl_verifies, query};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

fn signer(settings: &[(&str, String)]) -> CloudFront {
    let map: HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    CloudFront::from_settings(&|n| map.get(n).cloned())
        .unwrap()
        .unwrap()
}

#[test]
fn signed_urls_and_cookies_verify_with_openssl_for_both_key_types() {
    let dir = tempfile::tempdir().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for (kind, digest, alg) in [
        ("rsa", "sha1", SigningAlgorithm::RsaSha1),
        ("ec", "sha256", SigningAlgorithm::EcdsaSha256),
    ] {
        let (key, public) = keypair(dir.path(), kind);
        // PEM text with \n escapes, as an environment variable holds it.
        let pem = std::fs::read_to_string(&key).unwrap().replace('\n', "\\n");
        let cf = signer(&[
            ("CLOUDFRONT_DOMAIN", "d111.cloudfront.net".into()),
            ("CLOUDFRONT_KEY_PAIR_ID", "K2JCJMDEHXQW5F".into()),
            ("CLOUDFRONT_PRIVATE_KEY_PEM", pem),
            ("CLOUDFRONT_AUTH_MODE", "url".into()),
            ("CLOUDFRONT_SIGNED_TTL_SECONDS", "600".into()),
        ]);
        assert_eq!((cf.algorithm(), cf.mode()), (alg, AuthMode::Url));

        // Signed URL, canned policy rebuilt from the URL and Expires.
        let disk = cf.disk_url("alice", "win7", "v1");
        assert_eq!(
            disk,
            "https://d111.cloudfront.net/images/alice/win7/v1/disk.img"
        );
        let signed = cf.sign_url(&disk, now).unwrap();
        let q = query(&signed.url);
        assert_eq!(q["Expires"], "1800000600");
        assert_eq!(q["Key-Pair-Id"], "K2JCJMDEHXQW5F");
        assert_eq!(
            q.get("Hash-Algorithm").map(String::as_str),
            (kind == "ec").then_some("SHA256")
        );
        let canned = format!(
            r#"{{"Statement":[{{"Resource":"{disk}","Condition":{{"DateLessThan":{{"AWS:EpochTime":1800000600}}}}}}]}}"#
        );
        let sig = cf_decode(&q["Signature"]);
        assert!(
            openssl_verifies(dir.path(), &public, digest, canned.as_bytes(), &sig),
            "{kind} URL"
        );
        assert!(!openssl_verifies(
            dir.path(),
            &public,
            digest,
            canned.replace("v1", "v2").as_bytes(),
            &sig
        ));
        assert_eq!(signed.auth_json()["expiresAt"], "2027-01-15T08:10:00Z");

        // Signed cookies, custom policy with the wildcard resource.
        let resource = format!("{}*", cf.version_url("alice", "win7", "v1"));
        let cookies = cf.sign_cookies(&resource, now).unwrap();
        let get = |name: &str| {
            cookies
                .cookies
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .value
                .clone()
        };
        let policy = cf_decode(&get("CloudFront-Policy"));
        let parsed: serde_json::Value = serde_json::from_slice(&policy).unwrap();
        assert_eq!(
            parsed["Statement"][0]["Resource"],
            "https://d111.cloudfront.net/images/alice/win7/v1/*"
        );
        assert_eq!(
            parsed["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"],
            1_800_000_600
        );
        let sig = cf_decode(&get("CloudFront-Signature"));
        assert!(
            openssl_verifies(dir.path(), &public, digest, &policy, &sig),
            "{kind} cookies"
        );
        assert_eq!(get("CloudFront-Key-Pair-Id"), "K2JCJMDEHXQW5F");
        assert_eq!(cookies.cookies.len(), if kind == "ec" { 4 } else { 3 });
        let header = cookies.cookies[0].set_cookie();
        assert!(
            header.ends_with("; Path=/images; Secure; HttpOnly; SameSite=None; Expires=Fri, 15 Jan 2027 08:10:00 GMT"),
            "{header}"
        );
        let json = cookies.auth_json();
        assert_eq!(json["type"], "cookie");
        assert_eq!(json["cookies"][0]["attributes"][1], "Secure");
        assert!(!format!("{cookies:?}").contains(&get("CloudFront-Signature")));
    }
}

#[test]
fn cookie_attributes_follow_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keypair(dir.path(), "ec");
    let cf = signer(&[
        ("CLOUDFRONT_DOMAIN", "https://cdn.example/".into()),
        ("CLOUDFRONT_KEY_PAIR_ID", "KID".into()),
        ("CLOUDFRONT_PRIVATE_KEY_PEM", key.display().to_string()),
        ("CLOUDFRONT_COOKIE_DOMAIN", "example".into()),
        ("CLOUDFRONT_COOKIE_PARTITIONED", "true".into()),
        ("IMAGE_BASE_PATH", "/disks/".into()),
    ]);
    assert_eq!(cf.mode(), AuthMode::Cookie);
    let c = cf
        .sign_cookies("https://cdn.example/disks/a/b/c/*", UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        c.cookies[0].attributes[..6],
        [
            "Path=/disks",
            "Secure",
            "HttpOnly",
            "SameSite=None",
            "Partitioned",
            "Domain=example"
        ]
    );
    assert_eq!(
        cf.key_url("images/a/v1/manifest.json"),
        "https://cdn.example/images/a/v1/manifest.json"
    );
    assert_eq!(
        cf.redirect_location("images/a/v1/manifest.json", UNIX_EPOCH)
            .unwrap(),
        "https://cdn.example/images/a/v1/manifest.json"
    );
}

#[test]
fn partial_or_invalid_configuration_is_misconfig() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, _) = keypair(dir.path(), "rsa");
    let rsa = rsa.display().to_string();
    let none = CloudFront::from_settings(&|_| None).unwrap();
    assert!(none.is_none());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("CLOUDFRONT_DOMAIN", "d.net".into())],
            "CLOUDFRONT_KEY_PAIR_ID, CLOUDFRONT_PRIVATE_KEY_PEM unset",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
            ],
            "CLOUDFRONT_PRIVATE_KEY_PEM unset",
        ),
        (
            vec![("CLOUDFRONT_PRIVATE_KEY_PEM", rsa.clone())],
            "CLOUDFRONT_DOMAIN, CLOUDFRONT_KEY_PAIR_ID unset",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
                (
                    "CLOUDFRONT_PRIVATE_KEY_PEM",
                    "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----".into(),
                ),
            ],
            "is not a PEM private key",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
                ("CLOUDFRONT_PRIVATE_KEY_PEM", rsa.clone()),
                ("CLOUDFRONT_SIGNING_ALGORITHM", "ecdsa-sha256".into()),
            ],
            "does not fit the private key",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
                ("CLOUDFRONT_PRIVATE_KEY_PEM", rsa.clone()),
                ("CLOUDFRONT_AUTH_MODE", "both".into()),
            ],
            "must be cookie or url",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
                ("CLOUDFRONT_PRIVATE_KEY_PEM", rsa.clone()),
                ("CLOUDFRONT_COOKIE_PARTITIONED", "true".into()),
                ("CLOUDFRONT_COOKIE_SAMESITE", "Lax".into()),
            ],
            "needs CLOUDFRONT_COOKIE_SAMESITE=None",
        ),
        (
            vec![
                ("CLOUDFRONT_DOMAIN", "d.net".into()),
                ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
                ("CLOUDFRONT_PRIVATE_KEY_PEM", "/nonexistent.pem".into()),
            ],
            "reading /nonexistent.pem",
        ),
    ];
    for (settings, want) in cases {
        let map: HashMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let err = CloudFront::from_settings(&|n| map.get(n).cloned()).unwrap_err();
        assert_eq!(err.code(), "MISCONFIG");
        assert!(err.to_string().contains(want), "{settings:?}: {err}");
        assert!(!err.to_string().contains("BEGIN"), "{err}");
    }
    let with_rsa = signer(&[
        ("CLOUDFRONT_DOMAIN", "d.net".into()),
        ("CLOUDFRONT_KEY_PAIR_ID", "K".into()),
        ("CLOUDFRONT_PRIVATE_KEY_PEM", rsa),
    ]);
    assert!(!format!("{with_rsa:?}").contains("BEGIN"));
}
