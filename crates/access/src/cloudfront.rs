//! CloudFront signed cookies and signed URLs (SPEC 4.5, 4.7, 4.8).
//!
//! Signed cookies use a custom policy whose resource is a wildcard (`…/<owner>/<id>/<version>/*`),
//! so one set of cookies covers a disk and its chunks; signed URLs use the canned policy. The
//! signature is RSA-SHA1 (PKCS#1 v1.5; every CloudFront key group accepts it) or ECDSA P-256
//! with SHA-256 (sent with `Hash-Algorithm=SHA256`), chosen by `CLOUDFRONT_SIGNING_ALGORITHM`
//! or, when unset, by the key's type. Values are in CloudFront's URL-safe base64 (`+` → `-`,
//! `=` → `_`, `/` → `~`).
//!
//! [`CloudFront::from_settings`] takes the `CLOUDFRONT_*` and `IMAGE_BASE_PATH` values of SPEC
//! 4.8 through a lookup function (the library reads no environment). A partial configuration
//! (some of domain, key-pair id and private key, not all) is the SPEC's `MISCONFIG`.

use crate::{from_unix, iso8601, unix_secs};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use std::fmt;
use std::time::{Duration, SystemTime};

/// The default lifetime of signed cookies and URLs (`CLOUDFRONT_SIGNED_TTL_SECONDS`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(43_200);
/// The default `IMAGE_BASE_PATH`.
pub const DEFAULT_BASE_PATH: &str = "/images";

/// A configuration error: the gateway answers it as 500 `MISCONFIG`. Never quotes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CloudFront is misconfigured: {0}")]
pub struct CloudFrontError(pub String);

impl CloudFrontError {
    /// The JSON error code (SPEC 4.3).
    pub fn code(&self) -> &'static str {
        "MISCONFIG"
    }
}

fn misconfig<T>(message: impl Into<String>) -> Result<T, CloudFrontError> {
    Err(CloudFrontError(message.into()))
}

/// How the signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSA PKCS#1 v1.5 over SHA-1 (`rsa-sha1`).
    RsaSha1,
    /// ECDSA P-256 over SHA-256, DER-encoded (`ecdsa-sha256`).
    EcdsaSha256,
}

/// How `stream-url` hands out access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Signed cookies (the default).
    Cookie,
    /// A signed URL.
    Url,
}

/// One signed cookie: its name, value and `Set-Cookie` attributes.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    /// `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id` or
    /// `CloudFront-Hash-Algorithm`.
    pub name: String,
    /// Its value.
    pub value: String,
    /// `Path=…`, `Secure`, `HttpOnly`, `SameSite=…`, [`Partitioned`], [`Domain=…`], `Expires=…`.
    pub attributes: Vec<String>,
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cookie({}=(redacted); {})",
            self.name,
            self.attributes.join("; ")
        )
    }
}

impl Cookie {
    /// The value of its `Set-Cookie` header.
    pub fn set_cookie(&self) -> String {
        let mut out = format!("{}={}", self.name, self.value);
        for a in &self.attributes {
            out.push_str("; ");
            out.push_str(a);
        }
        out
    }
}

/// Signed cookies and when they expire.
#[derive(Debug, Clone)]
pub struct SignedCookies {
    /// The cookies.
    pub cookies: Vec<Cookie>,
    /// Their policy's `DateLessThan`.
    pub expires_at: SystemTime,
}

impl SignedCookies {
    /// `stream-url`'s `auth`: `{"type":"cookie","expiresAt":ISO,"cookies":[{"name","value","attributes"}]}`.
    pub fn auth_json(&self) -> serde_json::Value {
        let cookies: Vec<_> = self
            .cookies
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "value": c.value, "attributes": c.attributes}))
            .collect();
        serde_json::json!({"type": "cookie", "expiresAt": iso8601(self.expires_at), "cookies": cookies})
    }
}

/// A signed URL and when it expires.
#[derive(Clone)]
pub struct SignedUrl {
    /// The URL with `Expires`, `Signature`, `Key-Pair-Id` (and `Hash-Algorithm`).
    pub url: String,
    /// Its `Expires`.
    pub expires_at: SystemTime,
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignedUrl(redacted)")
    }
}

impl SignedUrl {
    /// `stream-url`'s `auth`: `{"type":"url","expiresAt":ISO}`.
    pub fn auth_json(&self) -> serde_json::Value {
        serde_json::json!({"type": "url", "expiresAt": iso8601(self.expires_at)})
    }
}

/// A configured CloudFront signer.
pub struct CloudFront {
    origin: String,
    base_path: String,
    key_pair_id: String,
    key: PKey<Private>,
    algorithm: SigningAlgorithm,
    mode: AuthMode,
    cookie_domain: Option<String>,
    same_site: &'static str,
    partitioned: bool,
    ttl: Duration,
}

impl fmt::Debug for CloudFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudFront")
            .field("origin", &self.origin)
            .field("key_pair_id", &self.key_pair_id)
            .field("key", &"(redacted)")
            .field("algorithm", &self.algorithm)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// CloudFront's URL-safe base64.
pub fn cf_base64(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// A policy statement with only `DateLessThan`: byte for byte the canned policy CloudFront
/// rebuilds for a signed URL, and the custom policy of signed cookies.
pub fn policy(resource: &str, expires: u64) -> String {
    let resource = serde_json::to_string(resource).expect("a string serialises");
    format!(
        r#"{{"Statement":[{{"Resource":{resource},"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// The private key from PEM text (with `\n` escapes allowed) or a file path.
fn private_key(value: &str) -> Result<PKey<Private>, CloudFrontError> {
    let pem = if value.contains("-----BEGIN") {
        value.replace("\\n", "\n")
    } else {
        std::fs::read_to_string(value.trim()).or_else(|e| {
            misconfig(format!(
                "CLOUDFRONT_PRIVATE_KEY_PEM: reading {}: {e}",
                value.trim()
            ))
        })?
    };
    PKey::private_key_from_pem(pem.as_bytes())
        .or_else(|_| misconfig("CLOUDFRONT_PRIVATE_KEY_PEM is not a PEM private key"))
}

fn algorithm_of(
    key: &PKey<Private>,
    named: Option<&str>,
) -> Result<SigningAlgorithm, CloudFrontError> {
    let p256 = || {
        key.ec_key()
            .ok()
            .and_then(|k| k.group().curve_name())
            .is_some_and(|n| n == Nid::X9_62_PRIME256V1)
    };
    let of_key = match key.id() {
        Id::RSA if key.bits() >= 2048 => SigningAlgorithm::RsaSha1,
        Id::RSA => return misconfig("the CloudFront RSA key must have at least 2048 bits"),
        Id::EC if p256() => SigningAlgorithm::EcdsaSha256,
        _ => return misconfig("the CloudFront key must be RSA (2048+ bits) or ECDSA P-256"),
    };
    let named = match named.map(str::trim) {
        None => return Ok(of_key),
        Some("rsa-sha1") => SigningAlgorithm::RsaSha1,
        Some("ecdsa-sha256") => SigningAlgorithm::EcdsaSha256,
        Some(other) => {
            return misconfig(format!(
                "CLOUDFRONT_SIGNING_ALGORITHM '{other}' must be rsa-sha1 or ecdsa-sha256"
            ))
        }
    };
    if named != of_key {
        return misconfig(format!(
            "CLOUDFRONT_SIGNING_ALGORITHM {named:?} does not fit the private key ({of_key:?})"
        ));
    }
    Ok(named)
}

impl CloudFront {
    /// The signer the `CLOUDFRONT_*` and `IMAGE_BASE_PATH` values configure, looked up by
    /// name with `get` (empty values are unset): `None` when CloudFront is not configured at
    /// all; `MISCONFIG` when it is partly configured or a value is invalid.
    pub fn from_settings(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, CloudFrontError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let required = [
            "CLOUDFRONT_DOMAIN",
            "CLOUDFRONT_KEY_PAIR_ID",
            "CLOUDFRONT_PRIVATE_KEY_PEM",
        ];
        let values: Vec<Option<String>> = required.iter().map(|n| get(n)).collect();
        let missing: Vec<&str> = required
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        match missing.len() {
            3 => return Ok(None),
            0 => {}
            _ => return misconfig(format!("partly configured: {} unset", missing.join(", "))),
        }
        let [Some(domain), Some(key_pair_id), Some(pem)] =
            <[Option<String>; 3]>::try_from(values).expect("three values")
        else {
            unreachable!("all three are set")
        };
        let domain = domain.trim().trim_end_matches('/');
        let origin = if domain.starts_with("https://") || domain.starts_with("http://") {
            domain.to_string()
        } else {
            format!("https://{domain}")
        };
        if origin
            .split_once("://")
            .is_some_and(|(_, host)| host.is_empty() || host.contains('/'))
        {
            return misconfig(format!(
                "CLOUDFRONT_DOMAIN '{domain}' must be a host or an origin"
            ));
        }
        let key = private_key(&pem)?;
        let algorithm = algorithm_of(&key, get("CLOUDFRONT_SIGNING_ALGORITHM").as_deref())?;
        let mode = match get("CLOUDFRONT_AUTH_MODE").as_deref().map(str::trim) {
            None | Some("cookie") => AuthMode::Cookie,
            Some("url") => AuthMode::Url,
            Some(other) => {
                return misconfig(format!(
                    "CLOUDFRONT_AUTH_MODE '{other}' must be cookie or url"
                ))
            }
        };
        let same_site = match get("CLOUDFRONT_COOKIE_SAMESITE").as_deref().map(str::trim) {
            None => "None",
            Some(v) if v.eq_ignore_ascii_case("none") => "None",
            Some(v) if v.eq_ignore_ascii_case("lax") => "Lax",
            Some(v) if v.eq_ignore_ascii_case("strict") => "Strict",
            Some(other) => {
                return misconfig(format!(
                    "CLOUDFRONT_COOKIE_SAMESITE '{other}' must be None, Lax or Strict"
                ))
            }
        };
        let partitioned = match get("CLOUDFRONT_COOKIE_PARTITIONED")
            .as_deref()
            .map(str::trim)
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return misconfig(format!(
                    "CLOUDFRONT_COOKIE_PARTITIONED '{other}' must be true or false"
                ))
            }
        };
        if partitioned && same_site != "None" {
            return misconfig(
                "CLOUDFRONT_COOKIE_PARTITIONED needs CLOUDFRONT_COOKIE_SAMESITE=None",
            );
        }
        let ttl = match get("CLOUDFRONT_SIGNED_TTL_SECONDS") {
            None => DEFAULT_TTL,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    return misconfig(format!(
                        "CLOUDFRONT_SIGNED_TTL_SECONDS '{v}' must be a positive number of seconds"
                    ))
                }
            },
        };
        let base = get("IMAGE_BASE_PATH").unwrap_or_else(|| DEFAULT_BASE_PATH.into());
        let base_path = format!("/{}", base.trim().trim_matches('/'));
        Ok(Some(CloudFront {
            origin,
            base_path: if base_path == "/" {
                String::new()
            } else {
                base_path
            },
            key_pair_id: key_pair_id.trim().to_string(),
            key,
            algorithm,
            mode,
            cookie_domain: get("CLOUDFRONT_COOKIE_DOMAIN").map(|d| d.trim().to_string()),
            same_site,
            partitioned,
            ttl,
        }))
    }

    /// How `stream-url` hands out access.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The directory URL of one version of an image:
    /// `https://<domain><IMAGE_BASE_PATH>/<owner>/<id>/<version>/`.
    pub fn version_url(&self, owner: &str, id: &str, version: &str) -> String {
        format!("{}{}/{owner}/{id}/{version}/", self.origin, self.base_path)
    }

    /// The stable disk URL of one version of an image (`…/<version>/disk.img`).
    pub fn disk_url(&self, owner: &str, id: &str, version: &str) -> String {
        format!("{}disk.img", self.version_url(owner, id, version))
    }

    /// The CloudFront URL of a storage key (the distribution's origin is the bucket).
    pub fn key_url(&self, key: &str) -> String {
        format!("{}/{}", self.origin, key.trim_start_matches('/'))
    }

    /// Where a chunked manifest or chunk route redirects (307, SPEC 4.7): the stable URL of
    /// `key` in cookie mode, a signed URL of it in URL mode.
    pub fn redirect_location(&self, key: &str, now: SystemTime) -> Result<String, CloudFrontError> {
        let url = self.key_url(key);
        match self.mode {
            AuthMode::Cookie => Ok(url),
            AuthMode::Url => Ok(self.sign_url(&url, now)?.url),
        }
    }

    fn sign(&self, policy: &str) -> Result<String, CloudFrontError> {
        let digest = match self.algorithm {
            SigningAlgorithm::RsaSha1 => MessageDigest::sha1(),
            SigningAlgorithm::EcdsaSha256 => MessageDigest::sha256(),
        };
        Signer::new(digest, &self.key)
            .and_then(|mut s| s.sign_oneshot_to_vec(policy.as_bytes()))
            .map(|sig| cf_base64(&sig))
            .or_else(|e| misconfig(format!("signing with the CloudFront key failed: {e}")))
    }

    fn expiry(&self, now: SystemTime) -> u64 {
        unix_secs(now) + self.ttl.as_secs()
    }

    /// A canned-policy signed URL of `url`, valid for the configured TTL from `now`.
    pub fn sign_url(&self, url: &str, now: SystemTime) -> Result<SignedUrl, CloudFrontError> {
        let expires = self.expiry(now);
        let signature = self.sign(&policy(url, expires))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut signed = format!(
            "{url}{sep}Expires={expires}&Signature={signature}&Key-Pair-Id={}",
            self.key_pair_id
        );
        if self.algorithm == SigningAlgorithm::EcdsaSha256 {
            signed.push_str("&Hash-Algorithm=SHA256");
        }
        Ok(SignedUrl {
            url: signed,
            expires_at: from_unix(expires),
        })
    }

    /// Signed cookies with a custom policy for `resource` (a URL, usually ending in `/*`),
    /// valid for the configured TTL from `now`.
    pub fn sign_cookies(
        &self,
        resource: &str,
        now: SystemTime,
    ) -> Result<SignedCookies, CloudFrontError> {
        let expires = self.expiry(now);
        let policy = policy(resource, expires);
        let signature = self.sign(&policy)?;
        let mut attributes = vec![
            format!(
                "Path={}",
                if self.base_path.is_empty() {
                    "/"
                } else {
                    &self.base_path
                }
            ),
            "Secure".to_string(),
            "HttpOnly".to_string(),
            format!("SameSite={}", self.same_site),
        ];
        if self.partitioned {
            attributes.push("Partitioned".into());
        }
        if let Some(d) = &self.cookie_domain {
            attributes.push(format!("Domain={d}"));
        }
        attributes.push(format!(
            "Expires={}",
            httpdate::fmt_http_date(from_unix(expires))
        ));
        let mut pairs = vec![
            ("CloudFront-Policy", cf_base64(policy.as_bytes())),
            ("CloudFront-Signature", signature),
            ("CloudFront-Key-Pair-Id", self.key_pair_id.clone()),
        ];
        if self.algorithm == SigningAlgorithm::EcdsaSha256 {
            pairs.push(("CloudFront-Hash-Algorithm", "SHA256".into()));
        }
        Ok(SignedCookies {
            cookies: pairs
                .into_iter()
                .map(|(name, value)| Cookie {
                    name: name.into(),
                    value,
                    attributes: attributes.clone(),
                })
                .collect(),
            expires_at: from_unix(expires),
        })
    }
}
