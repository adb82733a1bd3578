//! The authority: the OAuth operations Tessera offers, over the client registry and the token
//! shards. It knows neither HTTP nor sled; handlers call it with typed, validated requests and the
//! current time, and map its typed results to responses.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::actors::{IssueToken, Revocation, RevokeToken, ShardRouter};
use crate::crypto::{mint_token, SecretDigest, ServerKey, TokenDigest, TokenKind};
use crate::metrics::{self as m, HotCounters};
use crate::oauth::{scope, GrantRequest, OAuthError, PresentedClient};
use crate::store::{ClientRecord, ClientRegistry, StoreError, TokenClaims, TokenRecord, TokenType};

/// Longest string accepted as a token; anything longer cannot be one of ours and is answered
/// without a digest or a shard hop.
const MAX_TOKEN_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("token shard unavailable: {0}")]
    ShardUnavailable(#[from] actix::MailboxError),
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// An introspection response (RFC 7662 §2.2). An inactive token serialises as
/// `{"active":false}` and nothing else; an active one borrows every string it writes from the
/// token's shared claims.
#[derive(Debug, PartialEq)]
pub enum Introspection {
    Inactive,
    Active { token: TokenRecord, iss: Arc<str> },
}

impl Serialize for Introspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Inactive {
            active: bool,
        }
        #[derive(Serialize)]
        struct Active<'a> {
            active: bool,
            scope: &'a str,
            client_id: &'a str,
            token_type: &'static str,
            exp: u64,
            iat: u64,
            iss: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
        }
        match self {
            Introspection::Inactive => Inactive { active: false }.serialize(s),
            Introspection::Active { token, iss } => {
                let c = &token.claims;
                Active {
                    active: true,
                    scope: &c.scope,
                    client_id: &c.client_id,
                    // A resource server must not take a refresh token for an access token, so
                    // the two are told apart here rather than both reported as bearer tokens.
                    token_type: match c.token_type {
                        TokenType::Access => "Bearer",
                        TokenType::Refresh => "refresh_token",
                    },
                    exp: token.exp,
                    iat: token.iat,
                    iss,
                    sub: c.sub.as_deref(),
                    aud: c.aud.as_deref(),
                }
                .serialize(s)
            }
        }
    }
}

#[derive(Clone)]
pub struct Authority {
    inner: Arc<Inner>,
}

struct Inner {
    key: ServerKey,
    clients: ClientRegistry,
    shards: ShardRouter,
    issuer: Arc<str>,
    access_ttl: u64,
    counters: HotCounters,
    /// Compared against when the client id is unknown, so that an unknown client costs the
    /// same time as a wrong secret.
    decoy: SecretDigest,
}

impl Authority {
    pub fn new(
        key: ServerKey,
        clients: ClientRegistry,
        shards: ShardRouter,
        issuer: Arc<str>,
        access_ttl: Duration,
    ) -> Self {
        let decoy = key.secret_digest("tessera-decoy-secret");
        Self {
            inner: Arc::new(Inner {
                key,
                clients,
                shards,
                issuer,
                access_ttl: access_ttl.as_secs(),
                counters: HotCounters::new(),
                decoy,
            }),
        }
    }

    pub fn key(&self) -> &ServerKey {
        &self.inner.key
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.inner.clients
    }

    /// Checks presented credentials against the registry. The secret is digested and compared
    /// in constant time; unknown clients and wrong secrets fail alike, as `invalid_client`.
    pub fn authenticate(&self, presented: &PresentedClient) -> Result<Arc<ClientRecord>, OAuthError> {
        let offered = self.inner.key.secret_digest(&presented.secret);
        let client = self.inner.clients.get(&presented.client_id);
        let expected = client.as_ref().map_or(&self.inner.decoy, |c| &c.secret_digest);
        let secret_ok = expected.matches(&offered);
        match client {
            Some(c) if secret_ok => Ok(c),
            _ => {
                self.inner.counters.auth_failures.increment(1);
                // Counted, and logged only at debug: a failed authentication is the caller's input,
                // and `?` escapes it so a crafted client_id cannot forge log lines.
                tracing::debug!(client_id = ?presented.client_id, "client authentication failed");
                Err(OAuthError::InvalidClient)
            }
        }
    }

    /// Runs a token grant for an authenticated client. The reply comes after the new token is
    /// durable.
    pub async fn grant(
        &self,
        client: &ClientRecord,
        grant: GrantRequest,
        now: u64,
    ) -> Result<IssuedToken, AuthorityError> {
        if !client.may_use(grant.grant_type()) {
            return Err(
                OAuthError::UnauthorizedClient("the client is not registered for this grant type".into()).into(),
            );
        }
        match grant {
            GrantRequest::ClientCredentials { scope: requested } => {
                let scope = scope::grantable(requested, &client.scopes)?.to_wire();
                let record = TokenRecord {
                    claims: Arc::new(TokenClaims {
                        token_type: TokenType::Access,
                        client_id: client.client_id.clone(),
                        scope: scope.clone(),
                        sub: None,
                        aud: None,
                    }),
                    iat: now,
                    exp: now + self.inner.access_ttl,
                };
                let access_token = self.issue(record).await?;
                m::token_issued("client_credentials");
                Ok(IssuedToken {
                    access_token,
                    token_type: "Bearer",
                    expires_in: self.inner.access_ttl,
                    scope,
                })
            }
        }
    }

    /// Mints an access token for `record`, stores it on its shard, and returns it once durable.
    async fn issue(&self, record: TokenRecord) -> Result<String, AuthorityError> {
        let token = mint_token(TokenKind::Access);
        let digest = self.inner.key.token_digest(&token);
        let durable = self.inner.shards.send(&digest, IssueToken { digest, record }).await??;
        durable.await?;
        Ok(token)
    }

    /// The digest of a presented token, or `None` for a string that cannot be one of ours, which
    /// is then answered without hashing it or asking a shard.
    fn presented_digest(&self, token: &str) -> Option<TokenDigest> {
        (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| self.inner.key.token_digest(token))
    }

    /// RFC 7662 introspection of `token` at time `now`.
    pub async fn introspect(&self, token: &str, now: u64) -> Result<Introspection, AuthorityError> {
        let found = match self.presented_digest(token) {
            Some(digest) => self.inner.shards.introspect(digest, now).await?,
            None => None,
        };
        Ok(match found {
            Some(token) => {
                self.inner.counters.introspect_active.increment(1);
                Introspection::Active {
                    token,
                    iss: Arc::clone(&self.inner.issuer),
                }
            }
            None => {
                self.inner.counters.introspect_inactive.increment(1);
                Introspection::Inactive
            }
        })
    }

    /// RFC 7009 revocation by `client` of one of its own tokens. Unknown tokens succeed
    /// silently (§2.2); a token of another client is refused and left alone.
    pub async fn revoke(&self, client: &ClientRecord, token: &str) -> Result<(), AuthorityError> {
        let Some(digest) = self.presented_digest(token) else {
            return Ok(());
        };
        let msg = RevokeToken {
            digest,
            client_id: client.client_id.clone(),
        };
        match self.inner.shards.send(&digest, msg).await?? {
            Revocation::Revoked(durable) => {
                durable.await?;
                m::token_revoked();
                Ok(())
            }
            Revocation::NotFound => Ok(()),
            Revocation::NotOwner => {
                Err(OAuthError::UnauthorizedClient("the token was not issued to this client".into()).into())
            }
        }
    }

    /// Whether every shard answers.
    pub async fn ready(&self) -> bool {
        self.inner.shards.all_answer(Duration::from_secs(2)).await
    }
}
