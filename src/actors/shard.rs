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
use crate::store::{Durable, GroupCommit, StoreError, TokenPartition, TokenRecord};

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

/// Store a new token. The reply's [`Durable`] resolves once the record is on disk.
#[derive(Message)]
#[rtype(result = "Result<Durable, StoreError>")]
pub struct IssueToken {
    pub digest: TokenDigest,
    pub record: TokenRecord,
}

impl Handler<IssueToken> for TokenShard {
    type Result = Result<Durable, StoreError>;

    fn handle(&mut self, msg: IssueToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        self.partition.insert(&msg.digest, msg.record)?;
        self.count_live();
        Ok(self.commit.durable())
    }
}

/// Look tokens up: each `(digest, now)` is answered with its record if it exists and has not
/// expired at `now`. The records' claims are shared with the partition, so an answer copies no
/// string. The router batches every lookup a worker makes for this shard in one turn of its
/// event loop into one of these (see `ShardRouter::introspect`).
#[derive(Message)]
#[rtype(result = "Vec<Option<TokenRecord>>")]
pub struct IntrospectTokens {
    pub lookups: Vec<(TokenDigest, u64)>,
}

impl Handler<IntrospectTokens> for TokenShard {
    type Result = Vec<Option<TokenRecord>>;

    fn handle(&mut self, msg: IntrospectTokens, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        self.batch_size.record(msg.lookups.len() as f64);
        msg.lookups
            .iter()
            .map(|(digest, now)| self.partition.get(digest).filter(|r| r.is_live(*now)).cloned())
            .collect()
    }
}

/// What a revocation found.
pub enum Revocation {
    /// The token existed and belonged to the caller; it is gone once the `Durable` resolves.
    Revoked(Durable),
    /// No such token (never issued, already revoked, or swept after expiry).
    NotFound,
    /// The token belongs to another client; nothing was changed.
    NotOwner,
}

/// Revoke a token on behalf of `client_id`.
#[derive(Message)]
#[rtype(result = "Result<Revocation, StoreError>")]
pub struct RevokeToken {
    pub digest: TokenDigest,
    pub client_id: String,
}

impl Handler<RevokeToken> for TokenShard {
    type Result = Result<Revocation, StoreError>;

    fn handle(&mut self, msg: RevokeToken, _: &mut Context<Self>) -> Self::Result {
        self.took_message();
        match self.partition.get(&msg.digest) {
            None => Ok(Revocation::NotFound),
            Some(record) if record.claims.client_id != msg.client_id => Ok(Revocation::NotOwner),
            Some(_) => {
                self.partition.remove(&msg.digest)?;
                self.count_live();
                Ok(Revocation::Revoked(self.commit.durable()))
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
