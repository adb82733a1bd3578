//! The token shards: N `TokenShard` actors, each the only owner and writer of one partition of
//! token state, spread over T arbiter threads (shard `k` on thread `k % T`, T <= N).
//!
//! Routing needs no lookup table: a token's digest names its shard (`TokenDigest::shard`), so
//! every HTTP worker computes the same owner for the same token and sends its message straight
//! there. Because one actor handles one message at a time, the operations on a token (issue,
//! introspect, revoke) are serialised without locks.
//!
//! Threads are a separate knob from shards because ownership and placement answer different
//! questions. Shards partition the state; threads decide how often a sender must wake another
//! thread. On a small machine the HTTP workers already hold every core, and a shard thread is
//! mostly woken for one or two messages at a time, so two shards sharing one thread answer
//! more requests, with a shorter tail, than two shards on two threads (BENCHMARKS.md).

mod shard;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, Handler, MailboxError, Message};
use metrics::Gauge;

pub use shard::{IntrospectToken, IssueToken, Ping, Revocation, RevokeToken, TokenShard};

use crate::crypto::TokenDigest;
use crate::store::{GroupCommit, TokenPartition};

struct ShardHandle {
    addr: Addr<TokenShard>,
    /// Incremented here when a message is sent, decremented by the shard when it takes the
    /// message: the number of messages waiting in that shard's mailbox.
    depth: Gauge,
}

/// Cheap to clone; every HTTP worker holds one. The shard threads stop when the last clone drops.
#[derive(Clone)]
pub struct ShardRouter {
    shards: Arc<[ShardHandle]>,
    _threads: Arc<ShardThreads>,
}

struct ShardThreads(Vec<ArbiterHandle>);

impl Drop for ShardThreads {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

impl ShardRouter {
    /// Starts one shard per partition, shard `k` owning partition `k`, on `threads` arbiter
    /// threads (at least one, at most one per shard). Must be called inside an actix `System`.
    pub fn start(
        partitions: Vec<TokenPartition>,
        threads: usize,
        commit: Arc<GroupCommit>,
        sweep_interval: Duration,
    ) -> Self {
        let arbiters: Vec<ArbiterHandle> = (0..threads.clamp(1, partitions.len().max(1)))
            .map(|_| Arbiter::new().handle())
            .collect();
        let mut shards = Vec::with_capacity(partitions.len());
        for (index, partition) in partitions.into_iter().enumerate() {
            let depth = crate::metrics::mailbox_gauge(index);
            let shard = TokenShard::new(index, partition, Arc::clone(&commit), depth.clone(), sweep_interval);
            let addr = TokenShard::start_in_arbiter(&arbiters[index % arbiters.len()], move |_| shard);
            shards.push(ShardHandle { addr, depth });
        }
        Self {
            shards: shards.into(),
            _threads: Arc::new(ShardThreads(arbiters)),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Sends `msg` to the shard that owns `digest` and awaits its reply.
    pub async fn send<M>(&self, digest: &TokenDigest, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TokenShard: Handler<M>,
    {
        let shard = &self.shards[digest.shard(self.shards.len())];
        shard.depth.increment(1.0);
        shard.addr.send(msg).await
    }

    /// Whether every shard answers a ping, with a successful read of its partition, within
    /// `timeout`.
    pub async fn all_answer(&self, timeout: Duration) -> bool {
        let pings = self.shards.iter().map(|s| {
            s.depth.increment(1.0);
            s.addr.send(Ping).timeout(timeout)
        });
        futures_util::future::join_all(pings)
            .await
            .iter()
            .all(|r| matches!(r, Ok(Ok(()))))
    }
}
