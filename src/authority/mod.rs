//! The authority: the OAuth operations Tessera offers, over the client and user registries,
//! the token shards and the signing keys. It knows neither HTTP nor sled; handlers call it with
//! typed, validated requests and the current time, and map its typed results to responses.
//!
//! - this module: client authentication, client credentials, introspection, revocation;
//! - [`code_flow`]: authorization codes, the code and refresh grants, token families, ID tokens;
//! - [`users`]: sign-in with throttling, consent, userinfo.

mod accounts;
mod code_flow;
pub mod throttle;
mod users;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::actors::{IssueToken, Lookup, Revocation, RevokeFamily, RevokeToken, ShardRouter};
use crate::audit::{Audit, AuditEvent};
use crate::cluster::Cluster;
use crate::crypto::{mint_token, SecretDigest, ServerKey, TokenDigest, TokenKind};
use crate::limits::{LimitPolicy, Limited, Limits};
use crate::metrics::{self as m, HotCounters};
use crate::oauth::{audience, scope, GrantRequest, OAuthError, PresentedClient};
use crate::signing::SigningKeys;
use crate::store::{ClientRecord, ClientRegistry, StoreError, TokenClaims, TokenRecord, TokenType, UserRegistry};

pub use accounts::{GrantSummary, Revoked};
pub use code_flow::SignedIn;
pub use throttle::{Admission, Reservation, ThrottlePolicy};
pub use users::{LoginOutcome, UserInfo};

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
    #[error("{0}")]
    Internal(String),
    /// A rate limit or quota refused the request before any work was done.
    #[error("rate limited ({})", .0.reason)]
    RateLimited(Limited),
    /// This node cannot vouch for what it would answer (it lost the shared database).
    #[error("{0}")]
    Unavailable(&'static str),
}

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Serialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// An introspection response (RFC 7662 §2.2). An inactive token serialises as
/// `{"active":false}` and nothing else; an active one borrows every string it writes from the
/// token's shared claims.
#[derive(Debug, PartialEq)]
pub enum Introspection {
    Inactive,
    Active {
        token: TokenRecord,
        iss: Arc<str>,
        /// The token's public name (`ServerKey::opaque_id` of its digest), as the revocation
        /// feed names it.
        jti: String,
        /// The grant's public name, for tokens of a grant.
        grant_id: Option<String>,
        /// Seconds a resource server may cache this answer: without the feed, and with it.
        cache: (u64, u64),
    },
}

/// How long resource servers may cache an active introspection answer, in seconds, before
/// the token's own expiry caps it: without the revocation feed (a revoked token keeps working
/// there that long), and with it connected (revocations reach the cache through the feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    pub without_feed: u64,
    pub with_feed: u64,
}

impl CacheHint {
    /// The hints for a token expiring at `exp`, at `now`: never past the expiry.
    pub fn for_token(self, exp: u64, now: u64) -> (u64, u64) {
        let left = exp.saturating_sub(now);
        (self.without_feed.min(left), self.with_feed.min(left))
    }
}

impl Default for CacheHint {
    fn default() -> Self {
        CacheHint {
            without_feed: crate::config::DEFAULT_INTROSPECTION_CACHE_SECS,
            with_feed: crate::config::DEFAULT_INTROSPECTION_CACHE_WITH_FEED_SECS,
        }
    }
}

/// Domains of the public names `ServerKey::opaque_id` gives tokens and grants.
pub const TOKEN_ID: &str = "jti";
pub const GRANT_ID: &str = "family";

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
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: Option<u64>,
            iat: u64,
            iss: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            username: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<audience::Audience<'a>>,
            jti: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            grant_id: Option<&'a str>,
            cache_max_age: u64,
            cache_max_age_with_feed: u64,
        }
        match self {
            Introspection::Inactive => Inactive { active: false }.serialize(s),
            Introspection::Active {
                token,
                iss,
                jti,
                grant_id,
                cache,
            } => {
                let c = &token.claims;
                Active {
                    active: true,
                    scope: &c.scope,
                    client_id: &c.client_id,
                    // A resource server must not take a refresh token for an access token, so
                    // the two are told apart here rather than both reported as bearer tokens.
                    token_type: match c.token_type {
                        TokenType::Access => "Bearer",
                        TokenType::Refresh | TokenType::UsedRefresh => "refresh_token",
                    },
                    // A refresh token without expiry has none to report.
                    exp: (token.exp != NEVER).then_some(token.exp),
                    iat: token.iat,
                    iss,
                    sub: c.sub.as_deref(),
                    username: c.username.as_deref(),
                    aud: c.aud.as_deref().map(audience::Audience),
                    jti,
                    grant_id: grant_id.as_deref(),
                    cache_max_age: cache.0,
                    cache_max_age_with_feed: cache.1,
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

/// The expiry of a record that never expires (a refresh token when `refresh_token_ttl_secs`
/// is 0).
pub const NEVER: u64 = u64::MAX;

/// Lifetimes and policies of the authority, from `Settings`.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    pub issuer: Arc<str>,
    pub access_ttl: Duration,
    /// `None`: refresh tokens never expire.
    pub refresh_ttl: Option<Duration>,
    pub code_ttl: Duration,
    pub throttle: ThrottlePolicy,
    /// Where security events go.
    pub audit: Audit,
    pub limits: LimitPolicy,
    pub cache_hint: CacheHint,
    /// The other nodes of a shared database; `None` alone on the store.
    pub cluster: Option<Cluster>,
}

impl AuthorityConfig {
    /// Defaults for tests and benches: one-hour access tokens, 30-day refresh tokens.
    pub fn new(issuer: impl Into<Arc<str>>) -> Self {
        AuthorityConfig {
            issuer: issuer.into(),
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            code_ttl: Duration::from_secs(600),
            throttle: ThrottlePolicy::default(),
            audit: Audit::off(),
            limits: LimitPolicy::default(),
            cache_hint: CacheHint::default(),
            cluster: None,
        }
    }
}

struct Inner {
    key: ServerKey,
    clients: ClientRegistry,
    users: UserRegistry,
    shards: ShardRouter,
    signing: RwLock<SigningKeys>,
    /// The keys of the revocation feed's SETs: always ES256, whatever `id_token_alg` is, since
    /// an RSA signature costs milliseconds and a feed signs every revocation
    /// (BENCHMARKS.md, "The revocation feed").
    event_signing: RwLock<SigningKeys>,
    issuer: Arc<str>,
    access_ttl: u64,
    refresh_ttl: Option<u64>,
    code_ttl: u64,
    throttle: throttle::Throttle,
    /// One permit per core: at most this many argon2 checks run at once (`users::sign_in`).
    password_checks: Arc<tokio::sync::Semaphore>,
    audit: Audit,
    limits: Limits,
    cache_hint: CacheHint,
    cluster: Option<Cluster>,
    counters: HotCounters,
    /// Compared against when the client id is unknown, so that an unknown client costs the
    /// same time as a wrong secret.
    decoy: SecretDigest,
    /// Verified against when the username is unknown, so that an unknown user costs the same
    /// argon2 time as a wrong password.
    decoy_password: String,
}

impl Authority {
    pub fn new(
        key: ServerKey,
        clients: ClientRegistry,
        users: UserRegistry,
        shards: ShardRouter,
        signing: SigningKeys,
        event_signing: SigningKeys,
        config: AuthorityConfig,
    ) -> Self {
        let decoy = key.secret_digest("tessera-decoy-secret");
        let decoy_password =
            crate::crypto::hash_password(&crate::crypto::random_string("", 16)).expect("hashing a random string");
        Self {
            inner: Arc::new(Inner {
                key,
                clients,
                users,
                shards,
                signing: RwLock::new(signing),
                event_signing: RwLock::new(event_signing),
                issuer: config.issuer,
                access_ttl: config.access_ttl.as_secs(),
                refresh_ttl: config.refresh_ttl.map(|d| d.as_secs()),
                code_ttl: config.code_ttl.as_secs(),
                throttle: throttle::Throttle::new(config.throttle),
                password_checks: Arc::new(tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )),
                audit: config.audit.clone(),
                limits: Limits::new(config.limits, config.audit.clone()),
                cache_hint: config.cache_hint,
                cluster: config.cluster,
                counters: HotCounters::new(),
                decoy,
                decoy_password,
            }),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn users(&self) -> &UserRegistry {
        &self.inner.users
    }

    pub fn key(&self) -> &ServerKey {
        &self.inner.key
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.inner.clients
    }

    /// The audit log every security event goes to.
    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Checks presented credentials, from the client address `addr`, against the registry.
    /// Outcomes: the client; `invalid_client` for an unknown client or a wrong secret alike
    /// (the secret is digested and compared in constant time); `RateLimited` when this client
    /// at this address is over its allowance of failures (checked before the secret, and
    /// keyed by address alone for unknown ids) or, once authenticated, over its
    /// `rate_limit_per_sec`.
    pub fn authenticate(
        &self,
        presented: &PresentedClient,
        addr: Option<std::net::IpAddr>,
    ) -> Result<Arc<ClientRecord>, AuthorityError> {
        let client = self.inner.clients.get(&presented.client_id);
        let known_id = client.as_ref().map(|c| c.client_id.as_str());
        let limits = &self.inner.limits;
        limits
            .check_auth_allowed(known_id, addr)
            .map_err(AuthorityError::RateLimited)?;
        let offered = self.inner.key.secret_digest(&presented.secret);
        let expected = client.as_ref().map_or(&self.inner.decoy, |c| &c.secret_digest);
        let secret_ok = expected.matches(&offered);
        match client {
            Some(c) if secret_ok => {
                limits
                    .check_client_rate(&c.client_id, c.rate_limit_per_sec)
                    .map_err(AuthorityError::RateLimited)?;
                Ok(c)
            }
            _ => {
                limits.record_auth_failure(known_id, addr);
                self.inner.counters.auth_failures.increment(1);
                // Counted, and logged only at debug: a failed authentication is the caller's input,
                // and `?` escapes it so a crafted client_id cannot forge log lines.
                tracing::debug!(client_id = ?presented.client_id, "client authentication failed");
                Err(OAuthError::InvalidClient.into())
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
        // RFC 8707 §2: only registered resource servers may be named.
        if let Some(unknown) = grant.resources().iter().find(|r| !self.inner.clients.has_resource(r)) {
            return Err(OAuthError::InvalidTarget(
                format!("{unknown:?} is not the resource of a registered resource server").into(),
            )
            .into());
        }
        let aud = audience::join(grant.resources());
        match grant {
            GrantRequest::ClientCredentials { scope: requested, .. } => {
                let scope = scope::grantable(requested, &client.scopes)?.to_wire();
                let claims = TokenClaims {
                    aud,
                    ..TokenClaims::for_client(client.client_id.clone(), scope.clone())
                };
                let record = TokenRecord {
                    claims: Arc::new(claims),
                    iat: now,
                    exp: now + self.inner.access_ttl,
                };
                let access_token = self.issue(TokenKind::Access, record).await?;
                m::token_issued("client_credentials");
                self.inner.audit.emit(
                    self.grant_event("token_issued", "success", &client.client_id, None, None)
                        .grant_type("client_credentials"),
                );
                Ok(IssuedToken {
                    access_token,
                    token_type: "Bearer",
                    expires_in: self.inner.access_ttl,
                    scope,
                    refresh_token: None,
                    id_token: None,
                })
            }
            GrantRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
                ..
            } => {
                self.redeem_code(client, &code, &redirect_uri, &code_verifier, aud, now)
                    .await
            }
            GrantRequest::RefreshToken {
                refresh_token, scope, ..
            } => self.refresh(client, &refresh_token, scope, aud, now).await,
        }
    }

    /// Mints a token of `kind` for `record`, stores it on its shard, and returns it once
    /// durable. A token whose family was revoked meanwhile is refused with `invalid_grant`.
    async fn issue(&self, kind: TokenKind, record: TokenRecord) -> Result<String, AuthorityError> {
        self.vouch()?;
        let token = mint_token(kind);
        let digest = self.inner.key.token_digest(&token);
        match self.inner.shards.send(&digest, IssueToken { digest, record }).await?? {
            Some(durable) => durable.await?,
            None => return Err(OAuthError::InvalidGrant("the grant was revoked".into()).into()),
        }
        Ok(token)
    }

    /// An audit event about a grant of `client`: the client acts, for the user `sub` when it
    /// is a user's grant; the grant (token family) is named by its opaque id, never a token.
    fn grant_event(
        &self,
        event: &'static str,
        outcome: &'static str,
        client: &str,
        sub: Option<&str>,
        family: Option<&TokenDigest>,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(event, outcome)
            .actor(client)
            .client(client)
            .target(sub.unwrap_or(client));
        if let Some(sub) = sub {
            e = e.subject(sub);
        }
        if let Some(family) = family {
            e = e.grant(self.inner.key.opaque_id(GRANT_ID, family));
        }
        e
    }

    /// Revokes every token of `family` on every shard, and keeps refusing new ones until the
    /// family's last refresh token would have expired. Returns once that is durable. `client`
    /// is whose request led to it, for the audit log.
    async fn revoke_family(
        &self,
        client: &str,
        family: TokenDigest,
        reason: &'static str,
        now: u64,
    ) -> Result<(), AuthorityError> {
        let until = self.refresh_exp(now);
        let mut removed = 0;
        for reply in self.inner.shards.broadcast(RevokeFamily { family, until, now }).await {
            let (n, durable) = reply??;
            durable.await?;
            removed += n;
        }
        if let Some(cluster) = &self.inner.cluster {
            // The family's tokens that other nodes issued.
            removed += cluster
                .db()
                .revoke_stored(crate::store::Revoked::Family(family), until, now)
                .await?
                .tokens;
        }
        m::tokens_revoked(removed);
        m::family_revoked(reason);
        self.inner.audit.emit(
            self.grant_event("family_revoked", "success", client, None, Some(&family))
                .reason(reason),
        );
        tracing::info!(family = ?family, removed, reason, "revoked a token family");
        Ok(())
    }

    /// Sends `msg(None)`, about the token `digest`, to its shard. On a shared database, when the
    /// reply says this node does not hold the token (`absent`), the token is read through and
    /// the message sent once more with it (`msg(Some(fetched))`), so that the shard decides
    /// about another node's token as about one of its own.
    async fn send_reading_through<M, R>(
        &self,
        digest: TokenDigest,
        now: u64,
        msg: impl Fn(Option<crate::store::backend::Fetched>) -> M,
        absent: impl Fn(&R) -> bool,
    ) -> Result<R, AuthorityError>
    where
        M: actix::Message<Result = Result<R, crate::store::StoreError>> + Send + 'static,
        R: Send,
        crate::actors::TokenShard: actix::Handler<M>,
    {
        let reply = self.inner.shards.send(&digest, msg(None)).await??;
        let Some(cluster) = &self.inner.cluster else {
            return Ok(reply);
        };
        if !absent(&reply) {
            return Ok(reply);
        }
        match cluster.fetch(digest, now).await? {
            Some(fetched) => Ok(self.inner.shards.send(&digest, msg(Some(fetched))).await??),
            None => Ok(reply),
        }
    }

    /// The expiry of a refresh token issued at `now`.
    fn refresh_exp(&self, now: u64) -> u64 {
        self.inner.refresh_ttl.map_or(NEVER, |ttl| now.saturating_add(ttl))
    }

    /// The digest of a presented token, or `None` for a string that cannot be one of ours, which
    /// is then answered without hashing it or asking a shard.
    fn presented_digest(&self, token: &str) -> Option<TokenDigest> {
        (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| self.inner.key.token_digest(token))
    }

    /// RFC 7662 introspection of `token` at time `now` by the authenticated `caller`.
    /// Outcomes: `invalid_client` when the caller may not introspect (§4: the server decides
    /// who may); `Inactive` for a token that is not live, or whose audience does not include
    /// the caller's resource indicator; `Active` otherwise.
    pub async fn introspect(
        &self,
        caller: &ClientRecord,
        token: &str,
        now: u64,
    ) -> Result<Introspection, AuthorityError> {
        if !caller.introspect {
            return Err(OAuthError::InvalidClient.into());
        }
        let found = match self.presented_digest(token) {
            Some(digest) => self.live_token(digest, now).await?.map(|t| (digest, t)),
            None => None,
        };
        let found = found.filter(|(_, t)| audience::admits(t.claims.aud.as_deref(), caller.resource.as_deref()));
        Ok(match found {
            Some((digest, token)) => {
                self.inner.counters.introspect_active.increment(1);
                let key = &self.inner.key;
                Introspection::Active {
                    jti: key.opaque_id(TOKEN_ID, &digest),
                    grant_id: token.claims.family.as_ref().map(|f| key.opaque_id(GRANT_ID, f)),
                    cache: self.inner.cache_hint.for_token(token.exp, now),
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

    /// The record of the token `digest` if it is live at `now`: from its shard's memory, or, on
    /// a database shared with other nodes, read through from it.
    async fn live_token(&self, digest: TokenDigest, now: u64) -> Result<Option<TokenRecord>, AuthorityError> {
        self.vouch()?;
        match self.inner.shards.introspect(digest, now).await? {
            Lookup::Live(record) => Ok(Some(record)),
            Lookup::Inactive => Ok(None),
            Lookup::Absent { generation } => match &self.inner.cluster {
                Some(cluster) => cluster.read_through(&self.inner.shards, digest, generation, now).await,
                None => Ok(None),
            },
        }
    }

    /// Refuses what this node cannot answer for: on a shared database, a node that lost the
    /// change log does not know what other nodes revoked, nor may it promise what it writes.
    fn vouch(&self) -> Result<(), AuthorityError> {
        match &self.inner.cluster {
            Some(cluster) if !cluster.vouches() => Err(AuthorityError::Unavailable(
                "this node cannot reach the shared database; it does not answer from memory",
            )),
            _ => Ok(()),
        }
    }

    /// Introspection of several tokens in one call: each answered as [`introspect`](Self::introspect)
    /// would answer it alone, in the order given. The lookups of one call travel to each shard
    /// in one batch.
    pub async fn introspect_many(
        &self,
        caller: &ClientRecord,
        tokens: &[String],
        now: u64,
    ) -> Result<Vec<Introspection>, AuthorityError> {
        let answers = futures_util::future::join_all(tokens.iter().map(|t| self.introspect(caller, t, now))).await;
        answers.into_iter().collect()
    }

    /// An introspection answer as a JWT (RFC 9701): signed with the active key, for the caller
    /// (`aud`), the answer under `token_introspection`. Signed off the HTTP worker.
    pub async fn introspection_jwt(
        &self,
        caller: &ClientRecord,
        answer: &Introspection,
        now: u64,
    ) -> Result<String, AuthorityError> {
        let claims = serde_json::json!({
            "iss": &*self.inner.issuer,
            "aud": caller.client_id,
            "iat": now,
            "token_introspection": answer,
        });
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sign_jwt("token-introspection+jwt", &claims))
            .await
            .map_err(|e| AuthorityError::Internal(format!("signing an introspection answer: {e}")))?
    }

    /// RFC 7009 revocation by `client` of one of its own tokens. Unknown tokens succeed
    /// silently (§2.2); a token of another client is refused and left alone.
    pub async fn revoke(&self, client: &ClientRecord, token: &str, now: u64) -> Result<(), AuthorityError> {
        let Some(digest) = self.presented_digest(token) else {
            return Ok(());
        };
        let msg = |fetched| RevokeToken {
            digest,
            client_id: client.client_id.clone(),
            now,
            fetched,
        };
        // Another node's token is read through, so that its owner is checked here too.
        let revocation = self
            .send_reading_through(digest, now, msg, |r| matches!(r, Revocation::NotFound))
            .await?;
        match revocation {
            Revocation::Revoked(durable, family) => {
                durable.await?;
                m::tokens_revoked(1);
                self.inner.audit.emit(self.grant_event(
                    "token_revoked",
                    "success",
                    &client.client_id,
                    None,
                    family.as_ref(),
                ));
                // RFC 7009 §2.1: revoking a refresh token also revokes the access tokens of
                // the same grant.
                if let Some(family) = family {
                    self.revoke_family(&client.client_id, family, "revocation", now).await?;
                }
                Ok(())
            }
            Revocation::NotFound => Ok(()),
            Revocation::NotOwner => {
                Err(OAuthError::UnauthorizedClient("the token was not issued to this client".into()).into())
            }
        }
    }

    /// Whether every shard answers, and, on a shared database, this node follows it.
    pub async fn ready(&self) -> bool {
        self.vouch().is_ok() && self.inner.shards.all_answer(Duration::from_secs(2)).await
    }
}
