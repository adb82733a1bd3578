//! Records as stored: compact postcard encodings of the domain state.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::{SecretDigest, TokenDigest};
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
impl Record for UserRecord {}
impl Record for ConsentRecord {}

impl Record for ClientRecord {
    /// Also reads records written before clients had `post_logout_redirect_uris`: postcard is
    /// not self-describing, so a record one field short is recognised by its failed decode.
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match postcard::from_bytes(bytes) {
            Ok(record) => Ok(record),
            Err(e) => match postcard::from_bytes::<ClientRecordV1>(bytes) {
                Ok(v1) => Ok(ClientRecord {
                    client_id: v1.client_id,
                    secret_digest: v1.secret_digest,
                    redirect_uris: v1.redirect_uris,
                    grant_types: v1.grant_types,
                    scopes: v1.scopes,
                    post_logout_redirect_uris: Vec::new(),
                }),
                Err(_) => Err(e.into()),
            },
        }
    }
}

/// What a token is for. Stored, so that introspection answers from the record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenType {
    Access,
    Refresh,
    /// A refresh token that has been exchanged: inactive, and kept until its expiry so that a
    /// second presentation is recognised as reuse (OAuth 2.1 §4.3.1) instead of as unknown.
    UsedRefresh,
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
    /// The resource owner's login name, reported by introspection beside `sub`.
    pub username: Option<String>,
    /// The grant this token descends from: the digest of the authorization code, shared by every
    /// access and refresh token issued from that code or from its refresh tokens, so that one
    /// operation can revoke them all (a replayed code, a reused or revoked refresh token).
    pub family: Option<TokenDigest>,
    /// When the user authenticated, for ID tokens issued at refresh.
    pub auth_time: Option<u64>,
}

impl TokenClaims {
    /// Claims of a token a client holds for itself (client credentials): no user, no family.
    pub fn for_client(client_id: impl Into<String>, scope: impl Into<String>) -> Self {
        TokenClaims {
            token_type: TokenType::Access,
            client_id: client_id.into(),
            scope: scope.into(),
            sub: None,
            aud: None,
            username: None,
            family: None,
            auth_time: None,
        }
    }
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
    /// Whether introspection reports the token active at `now`: unexpired, and not a refresh
    /// token that was already exchanged.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.exp && self.claims.token_type != TokenType::UsedRefresh
    }

    #[cfg(test)]
    pub fn test_record(exp: u64) -> Self {
        TokenRecord {
            claims: Arc::new(TokenClaims::for_client("c", "read")),
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
    /// The user who approved the request: stable subject and login name.
    pub sub: String,
    pub username: String,
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
            sub: "u-alice".into(),
            username: "alice".into(),
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
    /// Where RP-initiated logout may send the browser afterwards; exact string match.
    pub post_logout_redirect_uris: Vec<String>,
}

/// A client as stored before `post_logout_redirect_uris`.
#[derive(Deserialize)]
struct ClientRecordV1 {
    client_id: String,
    secret_digest: SecretDigest,
    redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
}

/// A user who can sign in. The password is held only as an argon2id PHC string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    /// Stable subject identifier: random at creation, never reused, unchanged by renames of
    /// anything else, so relying parties can key accounts on it (OpenID Connect Core §5.7).
    pub sub: String,
    pub password_hash: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

/// The scopes a user has approved for a client; a request within them needs no consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub scopes: Vec<String>,
    pub granted_at: u64,
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
        Arc::make_mut(&mut r.claims).family = Some(TokenDigest([7; 32]));
        assert_eq!(TokenRecord::decode(&r.encode()).unwrap(), r);
        assert!(r.is_live(1_899_999_999));
        assert!(!r.is_live(1_900_000_000));
        Arc::make_mut(&mut r.claims).token_type = TokenType::UsedRefresh;
        assert!(!r.is_live(1_899_999_999), "an exchanged refresh token is never active");
    }

    #[test]
    fn clients_stored_before_logout_uris_still_decode() {
        #[derive(Serialize)]
        struct V1<'a> {
            client_id: &'a str,
            secret_digest: SecretDigest,
            redirect_uris: Vec<String>,
            grant_types: Vec<GrantType>,
            scopes: Vec<String>,
        }
        let old = postcard::to_stdvec(&V1 {
            client_id: "old",
            secret_digest: SecretDigest([3; 32]),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
        })
        .unwrap();
        let c = ClientRecord::decode(&old).unwrap();
        assert_eq!(c.client_id, "old");
        assert_eq!(c.redirect_uris, ["http://127.0.0.1/cb"]);
        assert!(c.post_logout_redirect_uris.is_empty());
        assert_eq!(ClientRecord::decode(&c.encode()).unwrap(), c);
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
