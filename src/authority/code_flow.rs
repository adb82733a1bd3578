//! The authorization code flow: codes, the code grant with PKCE, refresh rotation with reuse
//! detection, token families and ID tokens.
//!
//! Every token issued from one code, directly or through any number of refreshes, carries the
//! code's digest as its family. A replayed code or a reused refresh token revokes the family on
//! every shard (RFC 6749 §4.1.2, OAuth 2.1 §4.3.1), and the shards then refuse new tokens in it,
//! so a rotation already under way cannot slip a token past the revocation.

use std::sync::Arc;

use serde::Serialize;

use super::{Authority, AuthorityError, IssuedToken};
use crate::actors::{IssueCode, RedeemCode, RotateRefresh, Rotation};
use crate::crypto::{mint_token, TokenDigest, TokenKind};
use crate::metrics as m;
use crate::oauth::{pkce, AuthorizeRequest, GrantType, OAuthError, Scope};
use crate::store::{ClientRecord, CodeRecord, Redeem, TokenClaims, TokenRecord, TokenType};
use crate::vocab::RefreshPolicy;

/// Who approved an authorization request, and when they authenticated. `epoch` names the
/// password they signed in with (see `Authority::session_epoch`), so that a session ends when the
/// password changes or the user is removed.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub username: String,
    pub sub: String,
    pub auth_time: u64,
    pub epoch: String,
}

/// The claims of an ID token (OpenID Connect Core §2).
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
}

/// What the tokens of one grant share.
struct UserGrant<'a> {
    client: &'a ClientRecord,
    /// The grant's scope, which its refresh tokens carry.
    scope: String,
    /// The scope of the access token (and of the ID token's presence): the grant's, or a
    /// narrower one asked for at a refresh.
    access_scope: String,
    sub: String,
    username: String,
    family: TokenDigest,
    auth_time: u64,
    nonce: Option<String>,
    /// The access token's audience (RFC 8707); the refresh token has none.
    aud: Option<String>,
}

fn invalid_grant(why: &'static str) -> AuthorityError {
    OAuthError::InvalidGrant(why.into()).into()
}

impl Authority {
    /// Issues an authorization code for an approved request. Returns the code once durable.
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        user: &SignedIn,
        now: u64,
    ) -> Result<String, AuthorityError> {
        let code = mint_token(TokenKind::AuthorizationCode);
        let digest = self.inner.key.code_digest(&code);
        let record = CodeRecord {
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scope.to_wire(),
            sub: user.sub.clone(),
            username: user.username.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: user.auth_time,
            exp: now + self.inner.code_ttl,
            redeemed: false,
        };
        self.vouch()?;
        let durable = self.inner.shards.send(&digest, IssueCode { digest, record }).await??;
        durable.await?;
        m::code_issued();
        Ok(code)
    }

    /// The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
    pub(super) async fn redeem_code(
        &self,
        client: &ClientRecord,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        aud: Option<String>,
        now: u64,
    ) -> Result<IssuedToken, AuthorityError> {
        if code.len() > super::MAX_TOKEN_LEN {
            return Err(invalid_grant("the code is invalid, expired or already used"));
        }
        let digest = self.inner.key.code_digest(code);
        let (redeem, durable) = match &self.inner.cluster {
            // Once across every node: the database's row decides, not this node's memory.
            Some(cluster) => (
                cluster.db().redeem_code(digest, client.client_id.clone(), now).await?,
                None,
            ),
            None => {
                let msg = RedeemCode {
                    digest,
                    client_id: client.client_id.clone(),
                    now,
                };
                self.inner.shards.send(&digest, msg).await??
            }
        };
        let record = match redeem {
            Redeem::Redeemed(record) => record,
            Redeem::AlreadyUsed(_) => {
                tracing::warn!(client_id = %client.client_id, "authorization code replayed; revoking its tokens");
                self.inner.audit.emit(self.grant_event(
                    "code_replay",
                    "refused",
                    &client.client_id,
                    None,
                    Some(&digest),
                ));
                self.revoke_family(&client.client_id, digest, "code_replay", now)
                    .await?;
                return Err(invalid_grant(
                    "the code was already used; the tokens issued from it are revoked",
                ));
            }
            Redeem::Expired | Redeem::Unknown => {
                return Err(invalid_grant("the code is invalid, expired or already used"));
            }
        };
        if let Some(durable) = durable {
            durable.await?;
        }
        if record.redirect_uri != redirect_uri {
            return Err(invalid_grant("redirect_uri does not match the authorization request"));
        }
        if !pkce::verifies(code_verifier, &record.code_challenge) {
            return Err(invalid_grant("code_verifier does not match the code_challenge"));
        }
        let grant = UserGrant {
            client,
            access_scope: record.scope.clone(),
            scope: record.scope,
            sub: record.sub,
            username: record.username,
            family: digest,
            auth_time: record.auth_time,
            nonce: record.nonce,
            aud,
        };
        let issued = self.issue_user_tokens(&grant, now).await?;
        m::token_issued("authorization_code");
        self.audit_user_tokens("token_issued", "authorization_code", &grant);
        Ok(issued)
    }

    /// Presents the refresh token `digest` to its shard, reading it through first if this node
    /// does not hold it. On a shared database the rotation also spends the token there, once
    /// across every node: a token another node spent first is reuse.
    async fn rotate(
        &self,
        digest: TokenDigest,
        client: &ClientRecord,
        requested: Option<Scope>,
        now: u64,
    ) -> Result<Rotation, AuthorityError> {
        let msg = |fetched| RotateRefresh {
            digest,
            client_id: client.client_id.clone(),
            requested: requested.clone(),
            now,
            fetched,
        };
        let rotation = self
            .send_reading_through(digest, now, msg, |r| matches!(r, Rotation::Invalid))
            .await?;
        let Some(cluster) = &self.inner.cluster else {
            return Ok(rotation);
        };
        match rotation {
            Rotation::Rotated(record, durable) => {
                if cluster.db().spend_refresh(digest).await? {
                    Ok(Rotation::Rotated(record, durable))
                } else {
                    match record.claims.family {
                        Some(family) => Ok(Rotation::Reused(family)),
                        None => Ok(Rotation::Invalid),
                    }
                }
            }
            other => Ok(other),
        }
    }

    /// The `refresh_token` grant with rotation (RFC 6749 §6, OAuth 2.1 §4.3.1).
    pub(super) async fn refresh(
        &self,
        client: &ClientRecord,
        refresh_token: &str,
        requested: Option<Scope>,
        aud: Option<String>,
        now: u64,
    ) -> Result<IssuedToken, AuthorityError> {
        let Some(digest) = self.presented_digest(refresh_token) else {
            return Err(invalid_grant("the refresh token is invalid, expired or revoked"));
        };
        // An empty scope asks for nothing in particular: the grant's scope.
        let requested = requested.filter(|s| !s.is_empty());
        let access_scope = requested.as_ref().map(Scope::to_wire);
        let (record, durable) = match self.rotate(digest, client, requested, now).await? {
            Rotation::Rotated(record, durable) => (record, durable),
            Rotation::Reused(family) => {
                tracing::warn!(client_id = %client.client_id, "refresh token reused; revoking its family");
                self.inner.audit.emit(self.grant_event(
                    "refresh_reuse",
                    "refused",
                    &client.client_id,
                    None,
                    Some(&family),
                ));
                self.revoke_family(&client.client_id, family, "refresh_reuse", now)
                    .await?;
                return Err(invalid_grant(
                    "the refresh token was already used; the grant is revoked",
                ));
            }
            // RFC 6749 §6: a refresh may narrow the scope, never widen it.
            Rotation::ScopeExceeded => {
                return Err(OAuthError::InvalidScope("the requested scope exceeds the original grant".into()).into())
            }
            Rotation::Invalid => return Err(invalid_grant("the refresh token is invalid, expired or revoked")),
        };
        durable.await?;
        let c = &record.claims;
        let (Some(sub), Some(username), Some(family)) = (c.sub.clone(), c.username.clone(), c.family) else {
            return Err(invalid_grant("the refresh token is invalid, expired or revoked"));
        };
        let grant = UserGrant {
            client,
            // RFC 6749 §6: the new refresh token keeps the grant's scope; only the access token
            // narrows, so a later refresh may ask for the whole grant again.
            access_scope: access_scope.unwrap_or_else(|| c.scope.clone()),
            scope: c.scope.clone(),
            sub,
            username,
            family,
            auth_time: c.auth_time.unwrap_or(record.iat),
            nonce: None,
            aud,
        };
        let issued = self.issue_user_tokens(&grant, now).await?;
        m::token_issued("refresh_token");
        self.audit_user_tokens("token_refreshed", "refresh_token", &grant);
        Ok(issued)
    }

    /// Issues the access token, the refresh token (if the client may refresh, and either asked
    /// for `offline_access` or is registered to always get one) and the ID token (if `openid`
    /// was granted) of a user grant, and returns them once all are durable.
    async fn issue_user_tokens(&self, g: &UserGrant<'_>, now: u64) -> Result<IssuedToken, AuthorityError> {
        let granted = Scope::parse(&g.scope)?;
        let claims = |token_type, scope: &String, aud: Option<String>| {
            Arc::new(TokenClaims {
                token_type,
                client_id: g.client.client_id.clone(),
                scope: scope.clone(),
                sub: Some(g.sub.clone()),
                aud,
                username: Some(g.username.clone()),
                family: Some(g.family),
                auth_time: Some(g.auth_time),
            })
        };
        let access = TokenRecord {
            claims: claims(TokenType::Access, &g.access_scope, g.aud.clone()),
            iat: now,
            exp: now + self.inner.access_ttl,
        };
        // A refresh token only where the user granted offline access, or the client is
        // registered to always get one; it carries the grant's whole scope, and no audience.
        let refreshes = g.client.may_use(GrantType::RefreshToken)
            && (g.client.refresh == RefreshPolicy::Always || granted.contains("offline_access"));
        let refresh = refreshes.then(|| TokenRecord {
            claims: claims(TokenType::Refresh, &g.scope, None),
            iat: now,
            exp: self.refresh_exp(now),
        });
        let (access_token, refresh_token) = match refresh {
            Some(refresh) => {
                let (a, r) = futures_util::future::join(
                    self.issue(TokenKind::Access, access),
                    self.issue(TokenKind::Refresh, refresh),
                )
                .await;
                (a?, Some(r?))
            }
            None => (self.issue(TokenKind::Access, access).await?, None),
        };
        let id_token = Scope::parse(&g.access_scope)?
            .contains("openid")
            .then(|| self.id_token(g, &access_token, now))
            .transpose()?;
        Ok(IssuedToken {
            access_token,
            token_type: "Bearer",
            expires_in: self.inner.access_ttl,
            scope: g.access_scope.clone(),
            refresh_token,
            id_token,
        })
    }

    /// The audit event of tokens issued for a user grant: which grant, of which client, for whom.
    fn audit_user_tokens(&self, event: &'static str, grant_type: &'static str, g: &UserGrant<'_>) {
        let e = self.grant_event(event, "success", &g.client.client_id, Some(&g.sub), Some(&g.family));
        self.inner.audit.emit(e.grant_type(grant_type));
    }

    fn id_token(&self, g: &UserGrant<'_>, access_token: &str, now: u64) -> Result<String, AuthorityError> {
        let claims = IdTokenClaims {
            iss: &self.inner.issuer,
            sub: &g.sub,
            aud: &g.client.client_id,
            exp: now + self.inner.access_ttl,
            iat: now,
            auth_time: g.auth_time,
            nonce: g.nonce.as_deref(),
            at_hash: crate::signing::left_half_hash(access_token),
        };
        let keys = self
            .inner
            .signing
            .read()
            .map_err(|_| AuthorityError::Internal("the signing keys lock is poisoned".into()))?;
        Ok(keys.sign(&claims))
    }

    /// `claims` signed with the active key, `typ` in the header (a Security Event Token, say).
    pub fn sign_jwt<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Result<String, AuthorityError> {
        let keys = self
            .inner
            .signing
            .read()
            .map_err(|_| AuthorityError::Internal("the signing keys lock is poisoned".into()))?;
        Ok(keys.sign_typed(typ, claims))
    }

    /// `claims` as a Security Event Token (`typ` `secevent+jwt`), signed with the feed's key.
    pub fn sign_event<T: serde::Serialize>(&self, claims: &T) -> Result<String, AuthorityError> {
        let keys = self
            .inner
            .event_signing
            .read()
            .map_err(|_| AuthorityError::Internal("the event keys lock is poisoned".into()))?;
        Ok(keys.sign_typed("secevent+jwt", claims))
    }

    /// The algorithm of the feed's SETs, for discovery.
    pub fn event_signing_algorithm(&self) -> &'static str {
        match self.inner.event_signing.read() {
            Ok(keys) => keys.active().1.as_str(),
            Err(_) => crate::signing::Algorithm::ES256.as_str(),
        }
    }

    /// The JWK Set to publish: the active keys (ID tokens, and the feed's SETs) and retired
    /// keys whose tokens may still be valid.
    pub fn jwks(&self, now: u64) -> serde_json::Value {
        let mut keys = Vec::new();
        for set in [&self.inner.signing, &self.inner.event_signing] {
            if let Ok(set) = set.read() {
                if let Some(published) = set.jwks(now, self.inner.access_ttl)["keys"].as_array() {
                    keys.extend(published.iter().cloned());
                }
            }
        }
        serde_json::json!({ "keys": keys })
    }

    /// Algorithms of the held signing keys, for discovery.
    pub fn signing_algorithms(&self) -> Vec<&'static str> {
        match self.inner.signing.read() {
            Ok(keys) => keys.algorithms().iter().map(|a| a.as_str()).collect(),
            Err(_) => vec!["RS256"],
        }
    }

    /// Adds a new signing key of `alg` and retires the current one; returns the new key id.
    pub fn rotate_signing_key(&self, alg: crate::signing::Algorithm, now: u64) -> Result<String, AuthorityError> {
        // Made before the write lock is taken: while an RSA key is generated, ID tokens are
        // still signed and the JWKS still served.
        let fresh = crate::signing::NewKey::generate(alg, now).map_err(|e| AuthorityError::Internal(e.to_string()))?;
        // The feed's key turns over with it: one command retires every key in use.
        let fresh_event = crate::signing::NewKey::generate(crate::signing::Algorithm::ES256, now)
            .map_err(|e| AuthorityError::Internal(e.to_string()))?;
        self.inner
            .event_signing
            .write()
            .map_err(|_| AuthorityError::Internal("the event keys lock is poisoned".into()))?
            .rotate_to(fresh_event, now, self.inner.access_ttl)
            .map_err(|e| AuthorityError::Internal(e.to_string()))?;
        let mut keys = self
            .inner
            .signing
            .write()
            .map_err(|_| AuthorityError::Internal("the signing keys lock is poisoned".into()))?;
        keys.rotate_to(fresh, now, self.inner.access_ttl)
            .map_err(|e| AuthorityError::Internal(e.to_string()))
    }

    /// The payload of an ID token this server signed with a key it still holds, whatever its
    /// expiry (RP-initiated logout accepts expired hints), if its issuer is this server.
    pub fn verify_id_token(&self, jws: &str) -> Option<serde_json::Value> {
        let payload = self.inner.signing.read().ok()?.verify(jws)?;
        (payload.get("iss")?.as_str()? == &*self.inner.issuer).then_some(payload)
    }
}
