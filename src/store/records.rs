//! Records as stored: compact postcard encodings of the domain state.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::SecretDigest;
use crate::oauth::GrantType;

/// A value stored in sled, in postcard's compact encoding.
pub trait Record: Serialize + DeserializeOwned {
    fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding to a Vec cannot fail")
    }

    /// Appends the encoding to `buf` and returns it.
    fn encode_into(&self, buf: Vec<u8>) -> Vec<u8> {
        postcard::to_extend(self, buf).expect("encoding to a Vec cannot fail")
    }

    /// Outcomes: the record, or `StoreError::Corrupt` for bytes that are not one.
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

impl Record for TokenRecord {}
impl Record for CodeRecord {}
impl Record for ClientRecord {}

/// What a token is for. Stored, so that introspection answers from the record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenType {
    Access,
    Refresh,
}

/// What a token says about itself, apart from its times: who it was issued to, for what, and on
/// whose behalf. Many tokens share the same claims (every token of one client and scope set, or
/// of one user at one client), so a partition keeps one copy of each and its tokens point to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenClaims {
    pub token_type: TokenType,
    pub client_id: String,
    /// Space-separated granted scope.
    pub scope: String,
    /// The resource owner, for tokens issued on behalf of a user.
    pub sub: Option<String>,
    pub aud: Option<String>,
}

/// The state of one issued token, keyed by the token's digest. In memory the claims are shared
/// (`Arc`); on disk each record carries its own copy (postcard, about 30 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub claims: Arc<TokenClaims>,
    /// Issued-at and expiry, seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

impl TokenRecord {
    pub fn is_live(&self, now: u64) -> bool {
        now < self.exp
    }

    #[cfg(test)]
    pub fn test_record(exp: u64) -> Self {
        TokenRecord {
            claims: Arc::new(TokenClaims {
                token_type: TokenType::Access,
                client_id: "c".into(),
                scope: "read".into(),
                sub: None,
                aud: None,
            }),
            iat: 0,
            exp,
        }
    }
}

/// An authorization code (RFC 6749 §4.1.2), keyed by the code's digest. It is kept after its first
/// redemption, marked `redeemed`, until it expires, so that a replay is recognised as one
/// (RFC 6749 §4.1.2: the server should then revoke what the code produced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    /// Compared by exact string match at redemption (RFC 6749 §4.1.3).
    pub redirect_uri: String,
    pub scope: String,
    /// The user who approved the request.
    pub sub: String,
    /// PKCE `code_challenge` (S256), checked against the `code_verifier` at redemption.
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: u64,
    pub exp: u64,
    pub redeemed: bool,
}

impl CodeRecord {
    #[cfg(test)]
    pub fn test_record(exp: u64) -> Self {
        CodeRecord {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1:3001/callback".into(),
            scope: "openid".into(),
            sub: "alice".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            nonce: None,
            auth_time: 0,
            exp,
            redeemed: false,
        }
    }
}

/// What redeeming a code found. Expected outcomes are values; `StoreError` means I/O failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    /// First presentation: the code is now marked redeemed.
    Redeemed(CodeRecord),
    /// The code was redeemed before: a replay.
    AlreadyUsed(CodeRecord),
    /// Past its expiry (not yet swept).
    Expired,
    /// Never issued, or swept after expiry.
    Unknown,
}

/// A registered client. The secret is held only as its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub secret_digest: SecretDigest,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
}

impl PartialEq for SecretDigest {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl ClientRecord {
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_record_round_trips_and_is_compact() {
        let mut r = TokenRecord::test_record(1_900_000_000);
        Arc::make_mut(&mut r.claims).sub = Some("alice".into());
        let bytes = r.encode();
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(TokenRecord::decode(&bytes).unwrap(), r);
        assert!(r.is_live(1_899_999_999));
        assert!(!r.is_live(1_900_000_000));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            TokenRecord::decode(&[0xff, 0xff, 0xff]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(ClientRecord::decode(&[]), Err(StoreError::Corrupt(_))));
    }
}
