//! One token shard and the messages it handles.
//!
//! Reads answer from sled directly. Writes are applied to sled inside the handler (so the next
//! message already sees them) and the reply waits on the group commit, so a caller is told
//! "issued" or "revoked" only once that state is on disk. The wait runs outside the actor: the
//! shard goes on serving other messages while the flush is in progress.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use metrics::Gauge;

use crate::crypto::TokenDigest;
use crate::store::{GroupCommit, StoreError, TokenPartition, TokenRecord};

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
        Self {
            index,
            partition,
            commit,
            depth,
            sweep_interval,
        }
    }

    fn took_message(&self) {
        self.depth.decrement(1.0);
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        match self.partition.sweep_expired(crate::unix_now(), SWEEP_CHUNK) {
            Ok(0) => {}
            Ok(n) => {
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

/// Store a new token. Replies after the record is durable.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct IssueToken {
    pub digest: TokenDigest,
    pub record: TokenRecord,
}

impl Handler<IssueToken> for TokenShard {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: IssueToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        match self.partition.insert(&msg.digest, &msg.record) {
            Ok(()) => Box::pin(self.commit.durable()),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// Look a token up. Replies with its record if it exists and has not expired at `now`.
#[derive(Message)]
#[rtype(result = "Result<Option<TokenRecord>, StoreError>")]
pub struct IntrospectToken {
    pub digest: TokenDigest,
    pub now: u64,
}

impl Handler<IntrospectToken> for TokenShard {
    type Result = Result<Option<TokenRecord>, StoreError>;

    fn handle(&mut self, msg: IntrospectToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        Ok(self.partition.get(&msg.digest)?.filter(|r| r.is_live(msg.now)))
    }
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token existed, belonged to the caller, and its removal is durable.
    Revoked,
    /// No such token (never issued, already revoked, or swept after expiry).
    NotFound,
    /// The token belongs to another client; nothing was changed.
    NotOwner,
}

/// Revoke a token on behalf of `client_id`. Replies after the removal is durable.
#[derive(Message)]
#[rtype(result = "Result<Revocation, StoreError>")]
pub struct RevokeToken {
    pub digest: TokenDigest,
    pub client_id: String,
}

impl Handler<RevokeToken> for TokenShard {
    type Result = ResponseFuture<Result<Revocation, StoreError>>;

    fn handle(&mut self, msg: RevokeToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        let outcome = match self.partition.get(&msg.digest) {
            Ok(Some(record)) if record.client_id != msg.client_id => Ok(Revocation::NotOwner),
            Ok(Some(record)) => self
                .partition
                .delete(&msg.digest, record.exp)
                .map(|()| Revocation::Revoked),
            Ok(None) => Ok(Revocation::NotFound),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Revocation::Revoked) => {
                let durable = self.commit.durable();
                Box::pin(async move { durable.await.map(|()| Revocation::Revoked) })
            }
            other => Box::pin(async move { other }),
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
