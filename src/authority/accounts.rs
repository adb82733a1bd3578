//! Revocation that follows the account: every token of a user (their password changed, they were
//! removed, or an administrator revoked everything) or of a client (removed, or revoked), on every
//! shard; and what Tessera holds about a user, for a data-subject export.
//!
//! A mass revocation takes two steps. First every shard removes the holder's tokens and codes
//! (`RevokeHolder`) and names the grants (families) they belonged to. Then every shard closes
//! those families (`RevokeFamilies`): a code exchange or a refresh rotation that was already
//! under way when the first step ran may still send a token of such a grant to a shard, and a
//! closed family refuses it. Both steps are durable before the call returns, like every
//! revocation.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Authority, AuthorityError, NEVER};
use crate::actors::{Holder, RevokeFamilies, RevokeHolder, TokensOfSubject};
use crate::crypto::TokenDigest;
use crate::metrics as m;
use crate::store::TokenType;

/// What a mass revocation removed, over every shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub tokens: usize,
    pub codes: usize,
    pub grants: usize,
}

/// One grant of a user at one client, as a data-subject export shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantSummary {
    /// An opaque name of the grant (see `ServerKey::opaque_id`), the same in the audit log.
    pub grant: Option<String>,
    pub scope: String,
    pub access_tokens: usize,
    pub refresh_tokens: usize,
    pub first_issued_at: u64,
    /// The latest expiry among its live tokens; absent when a refresh token never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Authority {
    /// Revokes every token and code issued on behalf of the user `sub`, on every shard.
    pub async fn revoke_subject(&self, sub: &str, now: u64) -> Result<Revoked, AuthorityError> {
        self.revoke_holder(Holder::Subject(sub.to_owned()), now).await
    }

    /// Revokes every token and code of the client `client_id`, on every shard.
    pub async fn revoke_client_tokens(&self, client_id: &str, now: u64) -> Result<Revoked, AuthorityError> {
        self.revoke_holder(Holder::Client(client_id.to_owned()), now).await
    }

    async fn revoke_holder(&self, holder: Holder, now: u64) -> Result<Revoked, AuthorityError> {
        let mut revoked = Revoked::default();
        let mut families: HashSet<TokenDigest> = HashSet::new();
        for reply in self
            .inner
            .shards
            .broadcast(RevokeHolder {
                holder: holder.clone(),
                now,
            })
            .await
        {
            let (found, durable) = reply??;
            durable.await?;
            revoked.tokens += found.tokens;
            revoked.codes += found.codes;
            families.extend(found.families);
        }
        if let Some(cluster) = &self.inner.cluster {
            // What other nodes issued to the holder.
            let change = match &holder {
                Holder::Subject(sub) => crate::store::Revoked::Subject(sub.clone()),
                Holder::Client(client_id) => crate::store::Revoked::Client(client_id.clone()),
            };
            let stored = cluster.db().revoke_stored(change, now, now).await?;
            revoked.tokens += stored.tokens;
            revoked.codes += stored.codes;
            families.extend(stored.families);
        }
        revoked.grants = families.len();
        if !families.is_empty() {
            let families: Vec<TokenDigest> = families.into_iter().collect();
            let until = self.refresh_exp(now);
            let msg = RevokeFamilies {
                families: families.clone().into(),
                until,
                now,
            };
            for reply in self.inner.shards.broadcast(msg).await {
                let (removed, durable) = reply??;
                durable.await?;
                // Tokens a rotation under way issued between the two steps.
                revoked.tokens += removed;
            }
            if let Some(cluster) = &self.inner.cluster {
                for family in families {
                    let stored = cluster
                        .db()
                        .revoke_stored(crate::store::Revoked::Family(family), until, now)
                        .await?;
                    revoked.tokens += stored.tokens;
                }
            }
        }
        m::tokens_revoked(revoked.tokens);
        tracing::info!(holder = ?holder, tokens = revoked.tokens, grants = revoked.grants, "revoked every token of a holder");
        Ok(revoked)
    }

    /// The live grants of the user `sub`, by client: what a data-subject export lists.
    pub async fn grants_of(&self, sub: &str, now: u64) -> Result<BTreeMap<String, Vec<GrantSummary>>, AuthorityError> {
        let msg = TokensOfSubject {
            sub: sub.to_owned(),
            now,
        };
        let mut by_client: BTreeMap<String, HashMap<Option<TokenDigest>, GrantSummary>> = BTreeMap::new();
        for reply in self.inner.shards.broadcast(msg).await {
            for token in reply? {
                let c = &token.claims;
                let grant = by_client
                    .entry(c.client_id.clone())
                    .or_default()
                    .entry(c.family)
                    .or_insert_with(|| GrantSummary {
                        grant: c.family.map(|f| self.inner.key.opaque_id(super::GRANT_ID, &f)),
                        scope: String::new(),
                        access_tokens: 0,
                        refresh_tokens: 0,
                        first_issued_at: token.iat,
                        expires_at: Some(0),
                    });
                match c.token_type {
                    TokenType::Access => grant.access_tokens += 1,
                    // The refresh token carries the grant's whole scope; an access token may
                    // carry less.
                    TokenType::Refresh | TokenType::UsedRefresh => {
                        grant.refresh_tokens += 1;
                        grant.scope = c.scope.clone();
                    }
                }
                if grant.scope.is_empty() {
                    grant.scope = c.scope.clone();
                }
                grant.first_issued_at = grant.first_issued_at.min(token.iat);
                grant.expires_at = match (grant.expires_at, token.exp) {
                    (_, NEVER) | (None, _) => None,
                    (Some(e), exp) => Some(e.max(exp)),
                };
            }
        }
        Ok(by_client
            .into_iter()
            .map(|(client, grants)| {
                let mut grants: Vec<GrantSummary> = grants.into_values().collect();
                grants.sort_by_key(|g| g.first_issued_at);
                (client, grants)
            })
            .collect())
    }
}
