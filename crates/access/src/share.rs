//! Share-link tokens: 256 bits from the operating system's CSPRNG, URL-safe base64 (43
//! characters). The token is shown to its creator once; only its sha256 ([`TokenHash`]) is
//! stored. Redeeming a link hashes the presented token and looks the hash up (an index on the
//! hash leaks nothing useful: the hash of a guess says nothing about stored hashes); where
//! candidates are compared in memory, [`TokenHash::matches`] and [`find`] do it in constant
//! time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Random bytes in a token (≥ 128 bits, SPEC 5.2).
pub const TOKEN_BYTES: usize = 32;
/// Characters in a token.
pub const TOKEN_LEN: usize = 43;

/// A new share-link token. A secret: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareToken(String);

impl fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareToken(redacted)")
    }
}

impl ShareToken {
    /// A new token from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(ShareToken(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The token text, to hand to its creator once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What to store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

/// Whether `text` has a token's form (43 URL-safe base64 characters); anything else is refused
/// before it is hashed.
pub fn token_form_ok(text: &str) -> bool {
    text.len() == TOKEN_LEN
        && URL_SAFE_NO_PAD
            .decode(text)
            .is_ok_and(|b| b.len() == TOKEN_BYTES)
}

/// The sha256 of a token: what is stored, looked up and compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

impl TokenHash {
    /// The hash of a presented token.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Lowercase hex, for a text column.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From lowercase or uppercase hex.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }

    /// Whether `token` hashes to this, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        TokenHash::of(token).0.ct_eq(&self.0).into()
    }
}

/// The value stored with the hash that `token` matches, comparing against every candidate in
/// constant time (no early exit).
pub fn find<'a, T>(
    token: &str,
    candidates: impl IntoIterator<Item = (&'a TokenHash, T)>,
) -> Option<T> {
    let presented = TokenHash::of(token);
    let mut found = None;
    for (hash, value) in candidates {
        if bool::from(hash.0.ct_eq(&presented.0)) && found.is_none() {
            found = Some(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_stored_as_hashes() {
        let a = ShareToken::generate().unwrap();
        let b = ShareToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(token_form_ok(a.as_str()), "{}", a.as_str().len());
        assert!(!format!("{a:?}").contains(a.as_str()));
        let stored = TokenHash::from_hex(&a.hash().to_hex()).unwrap();
        assert!(stored.matches(a.as_str()));
        assert!(!stored.matches(b.as_str()));
        assert_eq!(stored.to_hex().len(), 64);
        assert!(!token_form_ok("short"));
        assert!(!token_form_ok(&"+".repeat(TOKEN_LEN)));
        let bytes: std::collections::HashSet<char> = (0..64)
            .flat_map(|_| {
                ShareToken::generate()
                    .unwrap()
                    .0
                    .chars()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(bytes.len() > 50, "the alphabet is used: {}", bytes.len());
    }

    #[test]
    fn find_returns_the_matching_link() {
        let tokens: Vec<ShareToken> = (0..4).map(|_| ShareToken::generate().unwrap()).collect();
        let hashes: Vec<TokenHash> = tokens.iter().map(ShareToken::hash).collect();
        let rows = || hashes.iter().zip(["l0", "l1", "l2", "l3"]);
        assert_eq!(find(tokens[2].as_str(), rows()), Some("l2"));
        assert_eq!(find(ShareToken::generate().unwrap().as_str(), rows()), None);
    }
}
