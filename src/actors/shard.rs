//! One token shard and the messages it handles.
//!
//! Reads are answered from the partition's memory. Writes are applied to the partition inside
//! the handler (so the next message already sees them), and the reply carries a [`Durable`]
//! that the caller awaits before telling anyone "issued" or "revoked". The wait runs outside
//! the actor: the shard goes on serving other messages while the flush is in progress, and the
//! flusher wakes the waiting caller directly.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use metrics::{Gauge, Histogram};

use crate::crypto::TokenDigest;
use crate::oauth::Scope;
use crate::store::backend::Fetched;
use crate::store::{
    Change, CodeRecord, Durable, GroupCommit, Hold, MassRevocation, Redeem, StoreError, TokenPartition, TokenRecord,
    TokenType,
};

/// Room for bursts from every HTTP worker before senders wait.
const MAILBOX_CAPACITY: usize = 4096;
/// Records removed per sweep step; between steps the shard serves requests.
const SWEEP_CHUNK: usize = 512;

pub struct TokenShard {
    index: usize,
    partition: TokenPartition,
    commit: Arc<GroupCommit>,
    /// Shared with `ShardRouter`, which increments it on send.
    depth: Gauge,
    /// Tokens in the partition, set after every change.
    live: Gauge,
    batch_size: Histogram,
    sweep_interval: Duration,
}

impl TokenShard {
    pub(super) fn new(
        index: usize,
        partition: TokenPartition,
        commit: Arc<GroupCommit>,
        depth: Gauge,
        sweep_interval: Duration,
    ) -> Self {
        let live = crate::metrics::live_tokens_gauge(index);
        live.set(partition.len() as f64);
        Self {
            index,
            partition,
            commit,
            depth,
            live,
            batch_size: crate::metrics::introspection_batch_histogram(),
            sweep_interval,
        }
    }

    fn took_message(&self) {
        self.depth.decrement(1.0);
    }

    fn count_live(&self) {
        self.live.set(self.partition.len() as f64);
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let forgotten = self.partition.forget_expired(crate::unix_now());
        if forgotten > 0 {
            self.count_live();
        }
        match self.partition.sweep_expired(crate::unix_now(), SWEEP_CHUNK) {
            Ok(0) => {}
            Ok(n) => {
                self.count_live();
                crate::metrics::tokens_swept(n);
                tracing::debug!(shard = self.index, removed = n, "swept expired tokens");
                if n == SWEEP_CHUNK {
                    ctx.notify(SweepMore);
                }
            }
            Err(e) => tracing::error!(shard = self.index, error = %e, "sweeping expired tokens failed"),
        }
    }
}

impl Actor for TokenShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.sweep_interval, |shard, ctx| shard.sweep(ctx));
    }
}

/// Store a new token. The reply's [`Durable`] resolves once the record is on disk; `None`
/// means the token's family was revoked first, and nothing was stored.
#[derive(Message)]
#[rtype(result = "Result<Option<Durable>, StoreError>")]
pub struct IssueToken {
    pub digest: TokenDigest,
    pub record: TokenRecord,
}

impl Handler<IssueToken> for TokenShard {
    type Result = Result<Option<Durable>, StoreError>;

    fn handle(&mut self, msg: IssueToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        if let Some(family) = &msg.record.claims.family {
            if self.partition.family_revoked(family) {
                return Ok(None);
            }
        }
        self.partition.insert(&msg.digest, msg.record)?;
        self.count_live();
        Ok(Some(self.commit.durable()))
    }
}

/// Store a new authorization code.
#[derive(Message)]
#[rtype(result = "Result<Durable, StoreError>")]
pub struct IssueCode {
    pub digest: TokenDigest,
    pub record: CodeRecord,
}

impl Handler<IssueCode> for TokenShard {
    type Result = Result<Durable, StoreError>;

    fn handle(&mut self, msg: IssueCode, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        self.partition.insert_code(&msg.digest, msg.record)?;
        Ok(self.commit.durable())
    }
}

/// Redeem an authorization code at `now`: the first redemption marks it used (durable once the
/// `Durable` resolves); a later one is reported as `AlreadyUsed`, a replay.
#[derive(Message)]
#[rtype(result = "Result<(Redeem, Option<Durable>), StoreError>")]
pub struct RedeemCode {
    pub digest: TokenDigest,
    pub client_id: String,
    pub now: u64,
}

impl Handler<RedeemCode> for TokenShard {
    type Result = Result<(Redeem, Option<Durable>), StoreError>;

    fn handle(&mut self, msg: RedeemCode, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let redeem = self.partition.redeem_code(&msg.digest, &msg.client_id, msg.now)?;
        let durable = matches!(redeem, Redeem::Redeemed(_)).then(|| self.commit.durable());
        Ok((redeem, durable))
    }
}

/// What presenting a refresh token found.
pub enum Rotation {
    /// A live refresh token of the caller: it is now marked used (durable with the `Durable`),
    /// and the caller issues its successors with the returned record's claims.
    Rotated(TokenRecord, Durable),
    /// A refresh token that was already exchanged: someone replayed it. The caller revokes the
    /// family.
    Reused(TokenDigest),
    /// A live refresh token of the caller, but the scope asked for is not within its grant
    /// (RFC 6749 §6). The token was not spent, so a client's mistake does not look like reuse
    /// at its next, correct refresh.
    ScopeExceeded,
    /// Not a live refresh token of this client: unknown, expired, revoked, an access token, or
    /// another client's.
    Invalid,
}

/// Exchange a refresh token of `client_id` at `now` (refresh rotation, OAuth 2.1 §4.3.1), if
/// `requested` (when given) is within the token's scope: the check and the rotation are one
/// message, so they cannot race on this node (across nodes, see `cluster`). `fetched` as for
/// [`RevokeToken`].
#[derive(Message)]
#[rtype(result = "Result<Rotation, StoreError>")]
pub struct RotateRefresh {
    pub digest: TokenDigest,
    pub client_id: String,
    pub requested: Option<Scope>,
    pub now: u64,
    pub fetched: Option<Fetched>,
}

impl Handler<RotateRefresh> for TokenShard {
    type Result = Result<Rotation, StoreError>;

    fn handle(&mut self, msg: RotateRefresh, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        if let Some(fetched) = msg.fetched {
            self.partition.hold(fetched, None);
        }
        let Some(record) = self.partition.get(&msg.digest) else {
            return Ok(Rotation::Invalid);
        };
        let c = &record.claims;
        if c.client_id != msg.client_id || record.exp <= msg.now {
            return Ok(Rotation::Invalid);
        }
        match (c.token_type, c.family) {
            (TokenType::UsedRefresh, Some(family)) => Ok(Rotation::Reused(family)),
            (TokenType::Refresh, _) => {
                let within = msg.requested.as_ref().is_none_or(|requested| {
                    Scope::parse(&c.scope).is_ok_and(|granted| requested.is_subset_of(granted.tokens()))
                });
                if !within {
                    return Ok(Rotation::ScopeExceeded);
                }
                let record = record.clone();
                self.partition.mark_refresh_used(&msg.digest)?;
                Ok(Rotation::Rotated(record, self.commit.durable()))
            }
            _ => Ok(Rotation::Invalid),
        }
    }
}

/// Revoke every token of a family held by this shard, and refuse new ones until `until`. Sent to
/// every shard, since a family's tokens are spread by their own digests.
#[derive(Message, Clone)]
#[rtype(result = "Result<(usize, Durable), StoreError>")]
pub struct RevokeFamily {
    pub family: TokenDigest,
    pub until: u64,
    pub now: u64,
}

impl Handler<RevokeFamily> for TokenShard {
    type Result = Result<(usize, Durable), StoreError>;

    fn handle(&mut self, msg: RevokeFamily, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let removed = self.partition.revoke_family(&msg.family, msg.until, msg.now)?;
        self.count_live();
        Ok((removed, self.commit.durable()))
    }
}

/// Close several families at once (see [`RevokeFamily`]): the second step of revoking a user's or
/// a client's tokens, for the grants the first step found. Sent to every shard.
#[derive(Message, Clone)]
#[rtype(result = "Result<(usize, Durable), StoreError>")]
pub struct RevokeFamilies {
    pub families: Arc<[TokenDigest]>,
    pub until: u64,
    pub now: u64,
}

impl Handler<RevokeFamilies> for TokenShard {
    type Result = Result<(usize, Durable), StoreError>;

    fn handle(&mut self, msg: RevokeFamilies, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let mut removed = 0;
        for family in msg.families.iter() {
            removed += self.partition.revoke_family(family, msg.until, msg.now)?;
        }
        self.count_live();
        Ok((removed, self.commit.durable()))
    }
}

/// Whose tokens a mass revocation takes.
#[derive(Debug, Clone)]
pub enum Holder {
    /// Every token and code issued on behalf of this user (`sub`).
    Subject(String),
    /// Every token and code of this client.
    Client(String),
}

/// Revoke every token and authorization code this shard holds for a user or a client. Sent to
/// every shard. The reply names the grants those records belonged to: the caller closes them on
/// every shard with [`RevokeFamilies`], which refuses what a code exchange or a rotation already
/// under way would still issue into them.
#[derive(Message, Clone)]
#[rtype(result = "Result<(MassRevocation, Durable), StoreError>")]
pub struct RevokeHolder {
    pub holder: Holder,
    pub now: u64,
}

impl Handler<RevokeHolder> for TokenShard {
    type Result = Result<(MassRevocation, Durable), StoreError>;

    fn handle(&mut self, msg: RevokeHolder, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let revoked = match &msg.holder {
            Holder::Subject(sub) => self.partition.revoke_subject(sub, msg.now)?,
            Holder::Client(client_id) => self.partition.revoke_client(client_id, msg.now)?,
        };
        self.count_live();
        Ok((revoked, self.commit.durable()))
    }
}

/// The live tokens this shard holds for the user `sub` at `now`, for a data-subject export.
#[derive(Message, Clone)]
#[rtype(result = "Vec<TokenRecord>")]
pub struct TokensOfSubject {
    pub sub: String,
    pub now: u64,
}

impl Handler<TokensOfSubject> for TokenShard {
    type Result = Vec<TokenRecord>;

    fn handle(&mut self, msg: TokensOfSubject, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let mut tokens = self.partition.tokens_of_subject(&msg.sub);
        tokens.retain(|t| t.is_live(msg.now));
        tokens
    }
}

/// What a shard's memory says of a token.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Held and live.
    Live(TokenRecord),
    /// Held, and expired or used.
    Inactive,
    /// Not held. On a database shared with other nodes it may be another node's, to read
    /// through ([`HoldToken`]); the partition's generation is taken now, before that read.
    Absent { generation: u64 },
}

impl Lookup {
    /// The record, if live.
    pub fn live(self) -> Option<TokenRecord> {
        match self {
            Lookup::Live(record) => Some(record),
            _ => None,
        }
    }
}

/// Look tokens up: each `(digest, now)` is answered from memory ([`Lookup`]). The records'
/// claims are shared with the partition, so an answer copies no string. The router batches
/// every lookup a worker makes for this shard in one turn of its event loop into one of these
/// (see `ShardRouter::introspect`).
#[derive(Message)]
#[rtype(result = "Vec<Lookup>")]
pub struct IntrospectTokens {
    pub lookups: Vec<(TokenDigest, u64)>,
}

impl Handler<IntrospectTokens> for TokenShard {
    type Result = Vec<Lookup>;

    fn handle(&mut self, msg: IntrospectTokens, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        self.batch_size.record(msg.lookups.len() as f64);
        msg.lookups
            .iter()
            .map(|(digest, now)| match self.partition.get(digest) {
                Some(record) if record.is_live(*now) => Lookup::Live(record.clone()),
                Some(_) => Lookup::Inactive,
                None => Lookup::Absent {
                    generation: self.partition.generation(),
                },
            })
            .collect()
    }
}

/// Hold a token read from a shared database after a lookup found it [`Lookup::Absent`] with
/// `generation`, and answer the introspection with it: its record if it is live at `now` and
/// its family is not closed here. A token this shard came to hold meanwhile answers for
/// itself.
#[derive(Message)]
#[rtype(result = "Option<TokenRecord>")]
pub struct HoldToken {
    pub fetched: Fetched,
    pub generation: u64,
    pub now: u64,
}

impl Handler<HoldToken> for TokenShard {
    type Result = Option<TokenRecord>;

    fn handle(&mut self, msg: HoldToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let digest = msg.fetched.digest;
        if let Some(held) = self.partition.get(&digest) {
            return held.is_live(msg.now).then(|| held.clone());
        }
        let fetched = msg.fetched.record.clone();
        match self.partition.hold(msg.fetched, Some(msg.generation)) {
            Hold::FamilyClosed => return None,
            Hold::Held => self.count_live(),
            // Not held, but the read itself is an answer as fresh as the database.
            Hold::Stale => {}
        }
        fetched.is_live(msg.now).then_some(fetched)
    }
}

/// Forget what another node revoked (`change`, read from the shared database's change log):
/// memory only, since that node removed the entries. Sent to every shard.
#[derive(Message, Clone)]
#[rtype(result = "usize")]
pub struct ForgetChange {
    pub change: Arc<Change>,
    pub now: u64,
}

impl Handler<ForgetChange> for TokenShard {
    type Result = usize;

    fn handle(&mut self, msg: ForgetChange, _: &mut Context<Self>) -> usize {
        self.took_message();
        let forgotten = self.partition.forget(&msg.change, msg.now);
        if forgotten > 0 {
            self.count_live();
        }
        forgotten
    }
}

/// What a revocation found.
pub enum Revocation {
    /// The token existed and belonged to the caller; it is gone once the `Durable` resolves.
    /// A refresh token names its family, which the caller then revokes too (RFC 7009 §2.1).
    Revoked(Durable, Option<TokenDigest>),
    /// No such token (never issued, already revoked, or swept after expiry).
    NotFound,
    /// The token belongs to another client; nothing was changed.
    NotOwner,
}

/// Revoke a token on behalf of `client_id` at `now`. `fetched` is the token as read from a
/// shared database, when this shard did not hold it: it is held first.
#[derive(Message)]
#[rtype(result = "Result<Revocation, StoreError>")]
pub struct RevokeToken {
    pub digest: TokenDigest,
    pub client_id: String,
    pub now: u64,
    pub fetched: Option<Fetched>,
}

impl Handler<RevokeToken> for TokenShard {
    type Result = Result<Revocation, StoreError>;

    fn handle(&mut self, msg: RevokeToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        if let Some(fetched) = msg.fetched {
            self.partition.hold(fetched, None);
        }
        match self.partition.get(&msg.digest) {
            None => Ok(Revocation::NotFound),
            Some(record) if record.claims.client_id != msg.client_id => Ok(Revocation::NotOwner),
            Some(record) => {
                let family = match record.claims.token_type {
                    TokenType::Refresh | TokenType::UsedRefresh => record.claims.family,
                    TokenType::Access => None,
                };
                self.partition.revoke(&msg.digest, msg.now)?;
                self.count_live();
                Ok(Revocation::Revoked(self.commit.durable(), family))
            }
        }
    }
}

/// Readiness check: the shard answers, and its partition serves a read.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for TokenShard {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        self.partition.probe()
    }
}

/// Continue a sweep that stopped at its chunk limit.
#[derive(Message)]
#[rtype(result = "()")]
struct SweepMore;

impl Handler<SweepMore> for TokenShard {
    type Result = ();

    fn handle(&mut self, _: SweepMore, ctx: &mut Context<Self>) {
        self.sweep(ctx);
    }
}
