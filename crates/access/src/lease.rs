//! Leases: short-lived capability tokens for the data plane. A lease grants `disk:read` on one
//! image (optionally one version of it) until its expiry, and nothing else.
//!
//! A token is `v1.KID.CLAIMS.TAG`: `KID` names the key that signed it, `CLAIMS` is the
//! URL-safe base64 (no padding) of `{"img":ID,"ver":VERSION?,"scp":"disk:read","exp":UNIX}`,
//! and `TAG` the URL-safe base64 of HMAC-SHA256(secret of KID, "v1.KID.CLAIMS"). Every
//! character is URL- and cookie-safe, so the same token travels as a bearer token, a cookie
//! ([`LEASE_COOKIE`]) or a query parameter ([`LEASE_QUERY`]). Tags are compared in constant
//! time; a token is never logged, stored or put in an error message.

use crate::keys::{LeaseKeys, Secret};
use crate::matrix::Action;
use crate::{from_unix, unix_secs};
use aero_chunked::layout::id_ok;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{Duration, SystemTime};

/// The cookie that carries a lease.
pub const LEASE_COOKIE: &str = "aero_lease";
/// The query parameter that carries a lease.
pub const LEASE_QUERY: &str = "lease";
/// The longest token looked at; longer ones are malformed.
pub const MAX_TOKEN_LEN: usize = 1024;
/// The longest lease that can be minted. Leases are meant to live minutes and be renewed.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// The longest subject a lease names.
pub const MAX_SUBJECT_LEN: usize = 300;

const VERSION_TAG: &str = "v1";

/// Why a lease does not grant a request. [`LeaseError::status`] is its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No lease came with the request.
    #[error("this image is private: a lease is required")]
    Missing,
    /// Not a lease token.
    #[error("the lease is malformed")]
    Malformed,
    /// Signed with a key id this server does not know.
    #[error("the lease is signed with an unknown key")]
    UnknownKey,
    /// The signature does not match the token.
    #[error("the lease signature does not match")]
    Tampered,
    /// Past its expiry.
    #[error("the lease has expired")]
    Expired,
    /// Grants something other than `disk:read`.
    #[error("the lease does not grant disk:read")]
    WrongScope,
    /// For another image.
    #[error("the lease is for another image")]
    WrongImage,
    /// For another version of this image.
    #[error("the lease is for another version of this image")]
    WrongVersion,
}

impl LeaseError {
    /// 401 when the request has no valid lease, 403 when a valid lease does not cover it.
    pub fn status(self) -> u16 {
        match self {
            LeaseError::WrongScope | LeaseError::WrongImage | LeaseError::WrongVersion => 403,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` challenge of its refusal: no error for a missing lease,
    /// `invalid_token` for a 401, `insufficient_scope` for a 403.
    pub fn challenge(self) -> &'static str {
        match self {
            LeaseError::Missing => r#"Bearer realm="aero""#,
            e if e.status() == 401 => r#"Bearer realm="aero", error="invalid_token""#,
            _ => r#"Bearer realm="aero", error="insufficient_scope""#,
        }
    }
}

/// Why a lease could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The image id or version breaks the id rule.
    #[error("\"{0}\" is not a valid image id or version")]
    BadId(String),
    /// Zero or longer than [`MAX_LEASE_TTL`].
    #[error("a lease lives from 1 second to {max} seconds, not {0} seconds", max = MAX_LEASE_TTL.as_secs())]
    BadTtl(u64),
    /// A subject longer than [`MAX_SUBJECT_LEN`].
    #[error("a lease subject has at most {MAX_SUBJECT_LEN} bytes")]
    BadSubject,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    img: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ver: Option<String>,
    scp: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
}

/// A verified lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The key that signed it.
    pub kid: String,
    /// The image it is for.
    pub image: String,
    /// The version it is limited to, if any.
    pub version: Option<String>,
    /// When it stops being valid.
    pub expires_at: SystemTime,
    /// On whose behalf the gateway granted it (e.g. `user:alice` or `link:ID`), so that a
    /// renewal can ask again whether that grant still holds. `serve` ignores it.
    pub subject: Option<String>,
}

impl Lease {
    /// Whether it covers `image` at `version` (the version being served; `None` when unknown,
    /// which a version-limited lease does not cover).
    pub fn covers(&self, image: &str, version: Option<&str>) -> Result<(), LeaseError> {
        if self.image != image {
            return Err(LeaseError::WrongImage);
        }
        match &self.version {
            Some(v) if Some(v.as_str()) != version => Err(LeaseError::WrongVersion),
            _ => Ok(()),
        }
    }
}

/// A freshly minted lease.
#[derive(Clone)]
pub struct Minted {
    /// The token (a secret: hand it to the client only).
    pub token: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"(redacted)")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Minted {
    /// The answer of the lease route: `{"lease": TOKEN, "expiresAt": ISO}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"lease": self.token, "expiresAt": crate::iso8601(self.expires_at)})
    }
}

fn tag(secret: &Secret, signed: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    mac
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

impl LeaseKeys {
    /// Mints a lease for `image` (at `version`, if given) that lives `ttl` from `now`, signed
    /// with the signing key.
    pub fn mint(
        &self,
        image: &str,
        version: Option<&str>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Minted, MintError> {
        self.mint_for(image, version, None, ttl, now)
    }

    /// Like [`LeaseKeys::mint`], naming the `subject` the lease is granted to (at most
    /// [`MAX_SUBJECT_LEN`] bytes).
    pub fn mint_for(
        &self,
        image: &str,
        version: Option<&str>,
        subject: Option<&str>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Minted, MintError> {
        if subject.is_some_and(|s| s.len() > MAX_SUBJECT_LEN) {
            return Err(MintError::BadSubject);
        }
        for id in std::iter::once(image).chain(version) {
            if !id_ok(id) {
                return Err(MintError::BadId(id.to_string()));
            }
        }
        if ttl.is_zero() || ttl > MAX_LEASE_TTL {
            return Err(MintError::BadTtl(ttl.as_secs()));
        }
        let exp = unix_secs(now) + ttl.as_secs().max(1);
        let claims = Claims {
            img: image.to_string(),
            ver: version.map(str::to_string),
            scp: Action::Read.scope().to_string(),
            exp,
            sub: subject.map(str::to_string),
        };
        let json = serde_json::to_vec(&claims).expect("claims serialise");
        let (kid, secret) = self.signing();
        let signed = format!("{VERSION_TAG}.{kid}.{}", URL_SAFE_NO_PAD.encode(json));
        let sig = URL_SAFE_NO_PAD.encode(tag(secret, &signed).finalize().into_bytes());
        Ok(Minted {
            token: format!("{signed}.{sig}"),
            expires_at: from_unix(exp),
        })
    }

    /// Verifies `token` at `now`: its form, its key, its signature (in constant time), its
    /// scope and its expiry. Which image it covers is [`Lease::covers`]'s question.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Lease, LeaseError> {
        if token.len() > MAX_TOKEN_LEN || !token.bytes().all(token_char) {
            return Err(LeaseError::Malformed);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [VERSION_TAG, kid, claims, sig] = parts[..] else {
            return Err(LeaseError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| LeaseError::Malformed)?;
        let secret = self.secret(kid).ok_or(LeaseError::UnknownKey)?;
        let signed = &token[..token.len() - parts[3].len() - 1];
        tag(secret, signed)
            .verify_slice(&sig)
            .map_err(|_| LeaseError::Tampered)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(LeaseError::Malformed)?;
        if claims.scp != Action::Read.scope() {
            return Err(LeaseError::WrongScope);
        }
        if unix_secs(now) >= claims.exp {
            return Err(LeaseError::Expired);
        }
        Ok(Lease {
            kid: kid.to_string(),
            image: claims.img,
            version: claims.ver,
            expires_at: from_unix(claims.exp),
            subject: claims.sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn keys(signing: &str, with: &[(&str, &str)]) -> LeaseKeys {
        let keys: serde_json::Map<_, _> = with
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let text = serde_json::json!({"signing": signing, "keys": keys}).to_string();
        LeaseKeys::from_json(text.as_bytes()).unwrap()
    }

    fn now() -> SystemTime {
        from_unix(1_800_000_000)
    }

    #[test]
    fn a_minted_lease_verifies_and_covers_its_image_only() {
        let k = keys("a", &[("a", K1)]);
        let m = k
            .mint("win7", None, Duration::from_secs(300), now())
            .unwrap();
        assert!(m.token.len() < 200, "compact: {}", m.token.len());
        assert!(m.token.bytes().all(token_char));
        assert!(!format!("{m:?}").contains(&m.token));
        let lease = k.verify(&m.token, now()).unwrap();
        assert_eq!(lease.expires_at, from_unix(1_800_000_300));
        assert_eq!(lease.covers("win7", None), Ok(()));
        assert_eq!(lease.covers("win7", Some("v3")), Ok(()));
        assert_eq!(lease.covers("win8", None), Err(LeaseError::WrongImage));
        let json = m.to_json();
        assert_eq!(json["expiresAt"], "2027-01-15T08:05:00Z");
        assert_eq!(lease.subject, None);
        let ttl = Duration::from_secs(60);
        let named = k
            .mint_for("win7", None, Some("user:alice"), ttl, now())
            .unwrap();
        let named = k.verify(&named.token, now()).unwrap();
        assert_eq!(named.subject.as_deref(), Some("user:alice"));
        let long = "x".repeat(MAX_SUBJECT_LEN + 1);
        assert_eq!(
            k.mint_for("win7", None, Some(&long), ttl, now())
                .unwrap_err(),
            MintError::BadSubject
        );
    }

    #[test]
    fn a_version_lease_covers_that_version_only() {
        let k = keys("a", &[("a", K1)]);
        let m = k
            .mint("win7", Some("v1"), Duration::from_secs(60), now())
            .unwrap();
        let lease = k.verify(&m.token, now()).unwrap();
        assert_eq!(lease.covers("win7", Some("v1")), Ok(()));
        assert_eq!(
            lease.covers("win7", Some("v2")),
            Err(LeaseError::WrongVersion)
        );
        assert_eq!(lease.covers("win7", None), Err(LeaseError::WrongVersion));
    }

    #[test]
    fn every_fault_has_its_own_error() {
        let k = keys("a", &[("a", K1)]);
        let good = k
            .mint("win7", None, Duration::from_secs(60), now())
            .unwrap()
            .token;
        let other = keys("b", &[("b", K2)]);
        let foreign = other
            .mint("win7", None, Duration::from_secs(60), now())
            .unwrap()
            .token;
        let same_kid_other_secret = keys("a", &[("a", K2)]);
        let forged = same_kid_other_secret
            .mint("win7", None, Duration::from_secs(60), now())
            .unwrap()
            .token;
        // Claims swapped for another image's, signature kept.
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let other_claims = k
            .mint("win8", None, Duration::from_secs(60), now())
            .unwrap()
            .token;
        parts[2] = other_claims.split('.').nth(2).unwrap().to_string();
        let swapped = parts.join(".");
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let cases: [(&str, LeaseError); 9] = [
            ("", LeaseError::Malformed),
            ("v1.a.b", LeaseError::Malformed),
            ("v2.a.b.c", LeaseError::Malformed),
            ("v1.a.b.c d", LeaseError::Malformed),
            (&foreign, LeaseError::UnknownKey),
            (&forged, LeaseError::Tampered),
            (&swapped, LeaseError::Tampered),
            (&flipped, LeaseError::Tampered),
            (&"a".repeat(MAX_TOKEN_LEN + 1), LeaseError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(k.verify(token, now()), Err(want), "{token}");
        }
        let at_expiry = now() + Duration::from_secs(60);
        assert_eq!(k.verify(&good, at_expiry), Err(LeaseError::Expired));
        assert!(k.verify(&good, at_expiry - Duration::from_secs(1)).is_ok());
        assert_eq!(LeaseError::Expired.status(), 401);
        assert_eq!(LeaseError::WrongImage.status(), 403);
        assert_eq!(LeaseError::Missing.challenge(), r#"Bearer realm="aero""#);
        assert!(LeaseError::Expired
            .challenge()
            .ends_with(r#"error="invalid_token""#));
        assert!(LeaseError::WrongImage
            .challenge()
            .ends_with(r#"error="insufficient_scope""#));
    }

    #[test]
    fn a_rotated_out_key_verifies_until_its_leases_expire() {
        let before = keys("a", &[("a", K1)]);
        let old = before
            .mint("win7", None, Duration::from_secs(120), now())
            .unwrap()
            .token;
        let after = keys("b", &[("a", K1), ("b", K2)]);
        assert_eq!(after.verify(&old, now()).unwrap().kid, "a");
        let new = after
            .mint("win7", None, Duration::from_secs(120), now())
            .unwrap()
            .token;
        assert!(new.starts_with("v1.b."));
        assert_eq!(
            after.verify(&old, now() + Duration::from_secs(120)),
            Err(LeaseError::Expired)
        );
        let retired = keys("b", &[("b", K2)]);
        assert_eq!(retired.verify(&old, now()), Err(LeaseError::UnknownKey));
    }

    #[test]
    fn minting_checks_ids_and_ttl() {
        let k = keys("a", &[("a", K1)]);
        let ttl = Duration::from_secs(60);
        assert_eq!(
            k.mint("../x", None, ttl, now()).unwrap_err(),
            MintError::BadId("../x".into())
        );
        assert!(k.mint("x", Some("a/b"), ttl, now()).is_err());
        assert!(k.mint("x", None, Duration::ZERO, now()).is_err());
        assert!(k
            .mint("x", None, MAX_LEASE_TTL + Duration::from_secs(1), now())
            .is_err());
    }
}
