//! The token shards: N `TokenShard` actors, each the only owner and writer of one partition of
//! token state, spread over T arbiter threads (shard `k` on thread `k % T`, T <= N).
//!
//! Routing needs no lookup table: a token's digest names its shard (`TokenDigest::shard`), so
//! every HTTP worker computes the same owner for the same token and sends its message straight
//! there. Because one actor handles one message at a time, the operations on a token (issue,
//! introspect, revoke) are serialised without locks.
//!
//! # Introspections travel in batches
//! Introspection is the hot path, and a shard answers one from memory in well under a
//! microsecond, so what it costs is the trip: waking the shard thread, and waking the worker
//! again with the reply. The router therefore collects, per worker thread and per shard, the
//! lookups that the worker's requests make during one turn of its event loop, and sends them as
//! one [`IntrospectTokens`] message. The first lookup of a turn spawns the task that sends the
//! batch; that task runs after the requests already woken in the same turn, so a busy worker
//! sends one message for many requests, and an idle one sends a batch of one at once.
//!
//! Threads are a separate knob from shards because ownership and placement answer different
//! questions. Shards partition the state; threads decide how often a sender must wake another
//! thread. On a small machine the HTTP workers already hold every core, and a shard thread is
//! mostly woken for one or two messages at a time, so two shards sharing one thread answer
//! more requests, with a shorter tail, than two shards on two threads (BENCHMARKS.md).

mod batch;
mod shard;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, Handler, MailboxError, Message};
use metrics::Gauge;
use tokio::sync::oneshot;

pub use shard::{
    ForgetChange, HoldToken, Holder, IntrospectTokens, IssueCode, IssueToken, Lookup, Ping, RedeemCode, Revocation,
    RevokeFamilies, RevokeFamily, RevokeHolder, RevokeToken, RotateRefresh, Rotation, TokenShard, TokensOfSubject,
};

use crate::crypto::TokenDigest;
use crate::store::{GroupCommit, TokenPartition};
use batch::Outboxes;

struct ShardHandle {
    addr: Addr<TokenShard>,
    /// Incremented here when a message is sent, decremented by the shard when it takes the
    /// message: the number of messages waiting in that shard's mailbox.
    depth: Gauge,
}

/// A lookup waiting for its batch to be sent: what to look up, and where the answer goes.
struct Waiting {
    digest: TokenDigest,
    now: u64,
    reply: oneshot::Sender<Lookup>,
}

/// Cheap to clone; every HTTP worker holds one. The shard threads stop when the last clone drops.
#[derive(Clone)]
pub struct ShardRouter {
    shards: Arc<[ShardHandle]>,
    lookups: Arc<Outboxes<Waiting>>,
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
            lookups: Arc::new(Outboxes::new(shards.len())),
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

    /// What the shard that owns the token with `digest` holds of it at `now`, in one message with the other lookups this thread makes for that shard in the same
    /// turn of its event loop (see `batch`). Must be called on a thread that runs an actix
    /// (tokio `LocalSet`) event loop, such as an HTTP worker.
    pub async fn introspect(&self, digest: TokenDigest, now: u64) -> Result<Lookup, MailboxError> {
        let shard = digest.shard(self.shards.len());
        let (reply, answer) = oneshot::channel();
        if self.lookups.push(shard, Waiting { digest, now, reply }) {
            actix_rt::spawn(self.clone().send_lookups(shard));
        }
        // The sender is dropped unanswered only if the shard did not answer the batch.
        answer.await.map_err(|_| MailboxError::Closed)
    }

    /// Sends this thread's pending lookups for `shard` as one message and hands out the answers.
    async fn send_lookups(self, shard: usize) {
        let batch = self.lookups.take(shard);
        let lookups = batch.iter().map(|l| (l.digest, l.now)).collect();
        let handle = &self.shards[shard];
        handle.depth.increment(1.0);
        if let Ok(answers) = handle.addr.send(IntrospectTokens { lookups }).await {
            for (lookup, answer) in batch.into_iter().zip(answers) {
                let _ = lookup.reply.send(answer);
            }
        }
    }

    /// Sends a copy of `msg` to every shard and collects the replies, in shard order.
    pub async fn broadcast<M>(&self, msg: M) -> Vec<Result<M::Result, MailboxError>>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        TokenShard: Handler<M>,
    {
        let sends = self.shards.iter().map(|s| {
            s.depth.increment(1.0);
            s.addr.send(msg.clone())
        });
        futures_util::future::join_all(sends).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, TokenRecord};

    #[actix_rt::test]
    async fn concurrent_lookups_from_one_thread_each_get_their_own_answer() {
        let store = Store::temporary().unwrap();
        let mut partitions = store.partitions(3, 0).unwrap();
        let digests: Vec<TokenDigest> = (0..120u8).map(|i| TokenDigest([i; 32])).collect();
        // Every third token is present, with its index as its expiry, so each answer names the
        // lookup it belongs to.
        for (i, d) in digests.iter().enumerate().filter(|(i, _)| i.is_multiple_of(3)) {
            partitions[d.shard(3)]
                .insert(d, TokenRecord::test_record(1000 + i as u64))
                .unwrap();
        }
        let commit = Arc::new(store.group_commit(Duration::ZERO));
        let router = ShardRouter::start(partitions, 2, commit, Duration::from_secs(3600));
        let answers = futures_util::future::join_all(digests.iter().map(|d| router.introspect(*d, 500))).await;
        for (i, answer) in answers.into_iter().enumerate() {
            let exp = answer.unwrap().live().map(|r| r.exp);
            assert_eq!(exp, i.is_multiple_of(3).then_some(1000 + i as u64), "lookup {i}");
        }
        // Each lookup carries its own clock: at 1050 only the tokens from index 51 on are live.
        let later = futures_util::future::join_all(digests.iter().map(|d| router.introspect(*d, 1050))).await;
        let live = later.iter().filter(|a| matches!(a, Ok(Lookup::Live(_)))).count();
        assert_eq!(live, (51..120u64).filter(|i| i.is_multiple_of(3)).count());
    }
}
