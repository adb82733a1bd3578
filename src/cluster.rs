//! Several Tessera nodes on one database: how a node that answers from its own memory stays
//! one truth with the others.
//!
//! The database is the truth; each node's memory holds what the node issued, what it loaded at
//! start, and what it read through since. Three rules keep that memory honest:
//!
//! - **A miss reads through.** A token another node issued is not in this node's memory: the
//!   lookup reads it from the database ([`SharedDatabase::fetch`]) and the shard holds it from
//!   then on ([`HoldToken`]). Issuance answers only after its commit, so a token is readable on
//!   every node as soon as its issuer answered.
//! - **Every node follows the change log.** A follower task reads the changes other nodes
//!   committed, in the order of their numbers, every `cluster_poll_ms`, and every shard
//!   forgets what they name ([`ForgetChange`]). A record read through before a change was
//!   forgotten is not held, since the read may predate the change (the partition's
//!   generation, see [`crate::store::TokenPartition::hold`]).
//! - **A node that cannot follow stops vouching.** Without a successful read of the change log
//!   for `cluster_stale_ms`, the node cannot know what the others revoked: it answers 503 to
//!   introspection and issuance and to `/ready`, until a read succeeds again.
//!
//! Codes and refresh tokens are spent once across nodes by the database's atomic updates
//! ([`SharedDatabase::redeem_code`], [`SharedDatabase::spend_refresh`]); revocations of a family,
//! a user or a client reach the entries other nodes issued through
//! [`SharedDatabase::revoke_stored`]. The authority calls those; this module follows and reads
//! through. No HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::{ForgetChange, HoldToken, ShardRouter};
use crate::config::ClusterSettings;
use crate::crypto::TokenDigest;
use crate::store::backend::{Fetched, SharedDatabase};
use crate::store::{StoreError, TokenRecord};

/// Changes read at once by the follower.
const CHANGES_PER_READ: usize = 512;

/// One node's view of the shared database. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    db: Arc<dyn SharedDatabase>,
    vouch: Arc<Vouch>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.db.node())
            .field("vouches", &self.vouches())
            .finish()
    }
}

/// When the follower last read the change log, as milliseconds since `base`.
struct Vouch {
    base: Instant,
    last_read_ms: AtomicU64,
    stale_after: Duration,
}

impl Vouch {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// A read that started at `started` succeeded.
    fn read_at(&self, started: Instant) {
        let ms = started.duration_since(self.base).as_millis() as u64;
        self.last_read_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn holds(&self) -> bool {
        let since = self.now_ms().saturating_sub(self.last_read_ms.load(Ordering::Relaxed));
        since <= self.stale_after.as_millis() as u64
    }
}

impl Cluster {
    /// This node over `db`; it vouches from now for `settings.stale_after`, until
    /// [`follow`](Self::follow) reads the change log.
    pub fn new(db: Arc<dyn SharedDatabase>, settings: &ClusterSettings) -> Self {
        Self {
            db,
            vouch: Arc::new(Vouch {
                base: Instant::now(),
                last_read_ms: AtomicU64::new(0),
                stale_after: settings.stale_after,
            }),
        }
    }

    pub fn db(&self) -> &dyn SharedDatabase {
        &*self.db
    }

    /// Whether this node read the change log recently enough to answer from memory.
    pub fn vouches(&self) -> bool {
        self.vouch.holds()
    }

    /// The token `digest` as the database holds it, if it is there and live at `now`.
    pub async fn fetch(&self, digest: TokenDigest, now: u64) -> Result<Option<Fetched>, StoreError> {
        Ok(self.db.fetch(vec![digest], now).await?.pop())
    }

    /// Answers a lookup that this node's shard found absent, with `generation`: reads the
    /// token through and has its shard hold it.
    pub async fn read_through(
        &self,
        shards: &ShardRouter,
        digest: TokenDigest,
        generation: u64,
        now: u64,
    ) -> Result<Option<TokenRecord>, crate::authority::AuthorityError> {
        let Some(fetched) = self.fetch(digest, now).await? else {
            return Ok(None);
        };
        let hold = HoldToken {
            fetched,
            generation,
            now,
        };
        Ok(shards.send(&digest, hold).await?)
    }

    /// Follows the change log from `after` (the head when the node connected, before it loaded
    /// its partitions) on the current arbiter, every `interval`: each change another node made
    /// is forgotten by every shard, in order. Runs until the arbiter stops.
    pub fn follow(&self, shards: ShardRouter, after: u64, interval: Duration) {
        let this = self.clone();
        actix_rt::spawn(async move {
            let node = this.db.node();
            let mut after = after;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                loop {
                    let started = Instant::now();
                    match this.db.changes_after(after, CHANGES_PER_READ).await {
                        Ok(changes) => {
                            if failing {
                                tracing::info!("reading the change log works again");
                                failing = false;
                            }
                            let full = changes.len() == CHANGES_PER_READ;
                            for committed in changes {
                                if committed.origin != node {
                                    let msg = ForgetChange {
                                        change: Arc::new(committed.change),
                                        now: crate::unix_now(),
                                    };
                                    for reply in shards.broadcast(msg).await {
                                        if let Err(e) = reply {
                                            tracing::error!(error = %e, "a shard did not take a change");
                                        }
                                    }
                                }
                                after = committed.seq;
                            }
                            // Vouched only once every change read is forgotten.
                            this.vouch.read_at(started);
                            if !full {
                                break;
                            }
                        }
                        Err(e) => {
                            if !failing {
                                tracing::error!(error = %e, "reading the change log failed; retrying");
                                failing = true;
                            }
                            break;
                        }
                    }
                }
            }
        });
    }
}
