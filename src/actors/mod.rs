//! The token shards: N `TokenShard` actors, each the only owner and writer of one partition of
//! token state.
//!
//! Routing needs no lookup table: a token's digest names its shard (`TokenDigest::shard`), so
//! every HTTP worker computes the same owner for the same token and sends its message straight
//! there. Because one actor handles one message at a time, the operations on a token (issue,
//! introspect, revoke) are serialised without locks.
//!
//! # Where shards run
//! Shard `k < min(workers, shards)` runs on HTTP worker `k`'s own thread: each worker's app
//! factory calls [`ShardRouter::host_here`]. A message from a worker to the shard it hosts then
//! wakes no other thread, and on a small machine the server has no more busy threads than it
//! has workers. Shards beyond the worker count get a dedicated arbiter thread each. actix-server
//! runs every worker's factory before it accepts the first connection, so every shard exists
//! before a request can reach one; if a worker dies and is restarted, its factory runs again and
//! re-hosts the shard whose actor died with it.

mod shard;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, Handler, MailboxError, Message};
use metrics::Gauge;

pub use shard::{IntrospectToken, IssueToken, Ping, Revocation, RevokeToken, TokenShard};

use crate::crypto::TokenDigest;
use crate::store::{GroupCommit, TokenPartition};

struct Slot {
    index: usize,
    /// The actor currently owning this shard; `None` until a worker hosts it.
    addr: RwLock<Option<Addr<TokenShard>>>,
    /// Incremented here when a message is sent, decremented by the shard when it takes the
    /// message: the number of messages waiting in that shard's mailbox.
    depth: Gauge,
    /// Handed to each actor instance that hosts this shard. The router itself never reads or
    /// writes through it, so the hosting actor stays the partition's only writer.
    partition: TokenPartition,
}

struct Inner {
    slots: Box<[Slot]>,
    /// How many slots (the first ones) are hosted by HTTP workers.
    worker_hosted: usize,
    /// Serialises `host_here`, so two workers never claim the same slot.
    claim: Mutex<()>,
    commit: Arc<GroupCommit>,
    sweep_interval: Duration,
    dedicated: Vec<ArbiterHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.dedicated {
            arbiter.stop();
        }
    }
}

/// Cheap to clone; every HTTP worker holds one. Dedicated shard threads stop when the last
/// clone drops; worker-hosted shards stop with their worker.
#[derive(Clone)]
pub struct ShardRouter {
    inner: Arc<Inner>,
}

impl ShardRouter {
    /// Prepares one shard per partition. The first `worker_hosted` shards wait for
    /// [`host_here`](Self::host_here); every other shard starts now on its own arbiter thread.
    /// Must be called inside an actix `System`.
    pub fn start(
        partitions: Vec<TokenPartition>,
        commit: Arc<GroupCommit>,
        sweep_interval: Duration,
        worker_hosted: usize,
    ) -> Self {
        let slots: Box<[Slot]> = partitions
            .into_iter()
            .enumerate()
            .map(|(index, partition)| Slot {
                index,
                addr: RwLock::new(None),
                depth: crate::metrics::mailbox_gauge(index),
                partition,
            })
            .collect();
        let worker_hosted = worker_hosted.min(slots.len());
        let mut dedicated = Vec::new();
        for slot in &slots[worker_hosted..] {
            let arbiter = Arbiter::new().handle();
            let shard = Self::new_shard(slot, &commit, sweep_interval);
            *slot.addr.write().unwrap_or_else(|p| p.into_inner()) =
                Some(TokenShard::start_in_arbiter(&arbiter, move |_| shard));
            dedicated.push(arbiter);
        }
        Self {
            inner: Arc::new(Inner {
                slots,
                worker_hosted,
                claim: Mutex::new(()),
                commit,
                sweep_interval,
                dedicated,
            }),
        }
    }

    fn new_shard(slot: &Slot, commit: &Arc<GroupCommit>, sweep_interval: Duration) -> TokenShard {
        TokenShard::new(
            slot.index,
            slot.partition.clone(),
            Arc::clone(commit),
            slot.depth.clone(),
            sweep_interval,
        )
    }

    /// Called on an HTTP worker's thread: starts, on this thread's arbiter, the first
    /// worker-hosted shard that has no live actor. Returns its index, or `None` when every
    /// worker-hosted shard already runs.
    pub fn host_here(&self) -> Option<usize> {
        let inner = &self.inner;
        let _claim = inner.claim.lock().unwrap_or_else(|p| p.into_inner());
        let slot = inner.slots[..inner.worker_hosted].iter().find(|s| {
            let addr = s.addr.read().unwrap_or_else(|p| p.into_inner());
            addr.as_ref().is_none_or(|a| !a.connected())
        })?;
        let addr = Self::new_shard(slot, &inner.commit, inner.sweep_interval).start();
        *slot.addr.write().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        tracing::debug!(shard = slot.index, "shard hosted on this worker");
        Some(slot.index)
    }

    pub fn shard_count(&self) -> usize {
        self.inner.slots.len()
    }

    fn addr(slot: &Slot) -> Result<Addr<TokenShard>, MailboxError> {
        slot.addr
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(MailboxError::Closed)
    }

    /// Sends `msg` to the shard that owns `digest` and awaits its reply.
    pub async fn send<M>(&self, digest: &TokenDigest, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TokenShard: Handler<M>,
    {
        let slot = &self.inner.slots[digest.shard(self.inner.slots.len())];
        let addr = Self::addr(slot)?;
        slot.depth.increment(1.0);
        addr.send(msg).await
    }

    /// Whether every shard answers a ping, with a successful read of its partition, within
    /// `timeout`.
    pub async fn all_answer(&self, timeout: Duration) -> bool {
        let pings = self.inner.slots.iter().map(|slot| async move {
            let addr = Self::addr(slot)?;
            slot.depth.increment(1.0);
            addr.send(Ping).timeout(timeout).await
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

    fn router(shards: usize, worker_hosted: usize) -> (ShardRouter, Store) {
        let store = Store::temporary().unwrap();
        let parts = store.partitions(shards).unwrap();
        let commit = Arc::new(GroupCommit::start(store.db().clone()));
        (
            ShardRouter::start(parts, commit, Duration::from_secs(60), worker_hosted),
            store,
        )
    }

    /// Runs `host_here` on `arbiter`'s thread, as a worker's app factory would.
    async fn host_on(router: &ShardRouter, arbiter: &ArbiterHandle) -> Option<usize> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = router.clone();
        arbiter.spawn_fn(move || {
            let _ = tx.send(r.host_here());
        });
        rx.await.unwrap()
    }

    #[actix_rt::test]
    async fn workers_claim_distinct_shards_and_extra_shards_get_their_own_thread() {
        let (router, _store) = router(3, 2);
        let (a, b, c) = (Arbiter::new(), Arbiter::new(), Arbiter::new());
        let mut claimed = vec![host_on(&router, &a.handle()).await, host_on(&router, &b.handle()).await];
        claimed.sort();
        assert_eq!(claimed, [Some(0), Some(1)]);
        assert_eq!(
            host_on(&router, &c.handle()).await,
            None,
            "a third worker hosts nothing"
        );
        assert!(
            router.all_answer(Duration::from_secs(2)).await,
            "shard 2 runs on its own arbiter"
        );
    }

    #[actix_rt::test]
    async fn a_shard_that_died_with_its_worker_is_hosted_again() {
        let (router, _store) = router(1, 1);
        let worker = Arbiter::new();
        assert_eq!(host_on(&router, &worker.handle()).await, Some(0));
        let digest = TokenDigest([3; 32]);
        let record = TokenRecord {
            exp: u64::MAX,
            ..TokenRecord::test_record(0)
        };
        router
            .send(&digest, IssueToken { digest, record })
            .await
            .unwrap()
            .unwrap();

        worker.stop();
        worker.join().unwrap();
        assert!(
            !router.all_answer(Duration::from_millis(500)).await,
            "the shard died with its worker"
        );

        let restarted = Arbiter::new();
        assert_eq!(
            host_on(&router, &restarted.handle()).await,
            Some(0),
            "the restarted worker re-hosts it"
        );
        let found = router
            .send(&digest, IntrospectToken { digest, now: 1 })
            .await
            .unwrap()
            .unwrap();
        assert!(found.is_some(), "the new instance serves the same partition");
    }
}
