//! Records as stored: compact postcard encodings of the domain state.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::{SecretDigest, TokenDigest};
use crate::vocab::{GrantType, RefreshPolicy};

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

/// Leads every client record written from now on. Records of the two earlier, unversioned
/// shapes begin with the length of their client id, which is at least 1, so a leading 0 cannot
/// be one of them; the byte after it names the shape.
const VERSIONED: u8 = 0;
/// The shape of [`ClientRecord`] written today. Shapes 1 (before `post_logout_redirect_uris`)
/// and 2 (before `introspect`, `resource`, `rate_limit_per_sec` and `refresh`) are unversioned.
const CLIENT_SHAPE: u8 = 3;

impl Record for ClientRecord {
    fn encode(&self) -> Vec<u8> {
        self.encode_into(Vec::new())
    }

    fn encode_into(&self, mut buf: Vec<u8>) -> Vec<u8> {
        buf.extend_from_slice(&[VERSIONED, CLIENT_SHAPE]);
        postcard::to_extend(self, buf).expect("encoding to a Vec cannot fail")
    }

    /// Reads today's versioned records and both unversioned shapes before them. postcard is not
    /// self-describing, so an unversioned record is recognised by which shape decodes.
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes {
            [VERSIONED, CLIENT_SHAPE, body @ ..] => Ok(postcard::from_bytes(body)?),
            [VERSIONED, ..] => Err(StoreError::Corrupt(postcard::Error::DeserializeBadEncoding)),
            _ => match postcard::from_bytes::<ClientRecordV2>(bytes) {
                Ok(v2) => Ok(v2.upgrade()),
                Err(e) => match postcard::from_bytes::<ClientRecordV1>(bytes) {
                    Ok(v1) => Ok(ClientRecordV2 {
                        client_id: v1.client_id,
                        secret_digest: v1.secret_digest,
                        redirect_uris: v1.redirect_uris,
                        grant_types: v1.grant_types,
                        scopes: v1.scopes,
                        post_logout_redirect_uris: Vec::new(),
                    }
                    .upgrade()),
                    Err(_) => Err(e.into()),
                },
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
    /// Whether the client may call introspection (RFC 7662 §4).
    pub introspect: bool,
    /// The resource indicator (RFC 8707) of a resource server: token requests may name it, and
    /// tokens whose audience lacks it introspect inactive for this client.
    pub resource: Option<String>,
    /// Requests per second this client may make to the token, introspection and revocation
    /// endpoints together; 0 means no limit.
    pub rate_limit_per_sec: u32,
    /// When the client gets refresh tokens.
    pub refresh: RefreshPolicy,
}

/// A client as stored before `introspect`, `resource`, `rate_limit_per_sec` and `refresh`.
#[derive(Deserialize)]
struct ClientRecordV2 {
    client_id: String,
    secret_digest: SecretDigest,
    redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
}

impl ClientRecordV2 {
    /// The settings such a client had: introspection for resource servers (no grant types),
    /// no audience, no rate limit, refresh tokens for `offline_access` (today's defaults).
    fn upgrade(self) -> ClientRecord {
        ClientRecord {
            introspect: self.grant_types.is_empty(),
            client_id: self.client_id,
            secret_digest: self.secret_digest,
            redirect_uris: self.redirect_uris,
            grant_types: self.grant_types,
            scopes: self.scopes,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            resource: None,
            rate_limit_per_sec: 0,
            refresh: RefreshPolicy::default(),
        }
    }
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
        assert!(!c.introspect, "a client with grant types did not introspect by default");
        assert_eq!(ClientRecord::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn clients_stored_before_introspection_settings_still_decode() {
        #[derive(Serialize)]
        struct V2<'a> {
            client_id: &'a str,
            secret_digest: SecretDigest,
            redirect_uris: Vec<String>,
            grant_types: Vec<GrantType>,
            scopes: Vec<String>,
            post_logout_redirect_uris: Vec<String>,
        }
        let old = postcard::to_stdvec(&V2 {
            client_id: "api",
            secret_digest: SecretDigest([4; 32]),
            redirect_uris: vec![],
            grant_types: vec![],
            scopes: vec![],
            post_logout_redirect_uris: vec!["http://127.0.0.1/bye".into()],
        })
        .unwrap();
        let c = ClientRecord::decode(&old).unwrap();
        assert_eq!(c.client_id, "api");
        assert_eq!(c.post_logout_redirect_uris, ["http://127.0.0.1/bye"]);
        assert!(c.introspect, "a resource server (no grant types) introspects");
        assert_eq!((c.resource.as_deref(), c.rate_limit_per_sec), (None, 0));
        assert_eq!(c.refresh, RefreshPolicy::OfflineAccess);
    }

    #[test]
    fn client_records_are_versioned_from_now_on() {
        let c = ClientRecord {
            client_id: "rs".into(),
            secret_digest: SecretDigest([5; 32]),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["read".into()],
            post_logout_redirect_uris: vec![],
            introspect: true,
            resource: Some("https://api.example".into()),
            rate_limit_per_sec: 50,
            refresh: RefreshPolicy::Always,
        };
        let bytes = c.encode();
        assert_eq!(bytes[..2], [VERSIONED, CLIENT_SHAPE]);
        assert_eq!(ClientRecord::decode(&bytes).unwrap(), c);
        let mut future = bytes.clone();
        future[1] = CLIENT_SHAPE + 1;
        assert!(
            matches!(ClientRecord::decode(&future), Err(StoreError::Corrupt(_))),
            "an unknown shape is refused, not misread"
        );
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
