//! Who is calling: `dev` (the `X-User-Id` header, SPEC 4.1), `none` (everyone is `public`) or
//! `token` (`Authorization: Bearer agw_<id>_<secret>`). Tokens carry 256 random bits from the
//! operating system's CSPRNG; only the sha256 of the secret is stored, and it is compared in
//! constant time. Tokens are never logged.

use crate::db::{Db, StoredToken};
use crate::error::{ApiError, ApiResult};
use crate::settings::AuthMode;
use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest user id.
pub const MAX_USER_ID: usize = 256;
/// The caller of `AUTH_MODE=none`.
pub const PUBLIC_USER: &str = "public";
/// How API tokens start.
pub const TOKEN_PREFIX: &str = "agw_";

/// A new token: what to hand to the user once, and what to store.
pub struct NewToken {
    /// The bearer token (shown once, never stored).
    pub token: String,
    /// Its stored form.
    pub stored: StoredToken,
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("the system's random source failed: {e}"))?;
    Ok(hex::encode(buf))
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a token for `user`: a 64-bit public id and a 256-bit secret.
pub fn new_token(user: &str) -> Result<NewToken, String> {
    check_user_id(user).map_err(|e| e.message)?;
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    Ok(NewToken {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        stored: StoredToken {
            id,
            user_id: user.to_string(),
            secret_sha256: secret_hash(&secret),
        },
    })
}

/// Checks a user id: not blank, at most [`MAX_USER_ID`] characters.
pub fn check_user_id(user: &str) -> ApiResult<()> {
    if user.trim().is_empty() {
        return Err(ApiError::bad_request("the user id is blank"));
    }
    if user.chars().count() > MAX_USER_ID {
        return Err(ApiError::bad_request(format!(
            "the user id is longer than {MAX_USER_ID} characters"
        )));
    }
    Ok(())
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTH", message)
}

/// The caller of a request.
pub async fn caller(mode: AuthMode, db: &Db, headers: &HeaderMap) -> ApiResult<String> {
    match mode {
        AuthMode::None => Ok(PUBLIC_USER.to_string()),
        AuthMode::Dev => {
            let mut values = headers.get_all("x-user-id").iter();
            let value = values
                .next()
                .ok_or_else(|| unauthenticated("missing X-User-Id header"))?;
            if values.next().is_some() {
                return Err(ApiError::bad_request("X-User-Id must be sent once"));
            }
            let user = value
                .to_str()
                .map_err(|_| ApiError::bad_request("X-User-Id is not visible ASCII"))?
                .trim();
            check_user_id(user)?;
            Ok(user.to_string())
        }
        AuthMode::Token => {
            let value = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| unauthenticated("missing Authorization: Bearer token"))?;
            let token = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| unauthenticated("Authorization must be a Bearer token"))?
                .trim();
            let (id, secret) = token
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|rest| rest.split_once('_'))
                .ok_or_else(|| unauthenticated("malformed token"))?;
            let stored = db
                .live_token(id)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| unauthenticated("unknown or revoked token"))?;
            let given = secret_hash(secret);
            if bool::from(given.as_bytes().ct_eq(stored.secret_sha256.as_bytes())) {
                Ok(stored.user_id)
            } else {
                Err(unauthenticated("unknown or revoked token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let a = new_token("alice").unwrap();
        let b = new_token("alice").unwrap();
        assert_ne!(a.token, b.token);
        let secret = a.token.rsplit('_').next().unwrap();
        assert_eq!(secret.len(), 64, "256 bits of secret");
        assert!(!a.stored.secret_sha256.contains(secret));
        assert_eq!(a.stored.secret_sha256, secret_hash(secret));
        assert!(new_token(" ").is_err());
    }
}
