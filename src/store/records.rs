//! Records as stored: compact postcard encodings of the domain state.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::SecretDigest;
use crate::oauth::GrantType;

/// What a token is for. Stored, so that introspection answers from the record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenType {
    Access,
}

/// The state of one issued token, keyed by the token's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_type: TokenType,
    pub client_id: String,
    /// Space-separated granted scope.
    pub scope: String,
    /// The resource owner, for tokens issued on behalf of a user.
    pub sub: Option<String>,
    pub aud: Option<String>,
    /// Issued-at and expiry, seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

impl TokenRecord {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    pub fn is_live(&self, now: u64) -> bool {
        now < self.exp
    }

    #[cfg(test)]
    pub fn test_record(exp: u64) -> Self {
        TokenRecord {
            token_type: TokenType::Access,
            client_id: "c".into(),
            scope: "read".into(),
            sub: None,
            aud: None,
            iat: 0,
            exp,
        }
    }
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
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding to a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_record_round_trips_and_is_compact() {
        let r = TokenRecord {
            sub: Some("alice".into()),
            ..TokenRecord::test_record(1_900_000_000)
        };
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
