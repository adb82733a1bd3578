//! Persistent state: token partitions, the change log, clients, users and consents, and group
//! commit, over a storage [`Backend`]. Knows nothing of HTTP and nothing of actors.
//!
//! The types here hold the state in memory and decide (what is active, what was used, which
//! change comes next); a backend only keeps what they write ([`backend`] says what it must
//! promise). sled is the embedded backend ([`sled_store`] describes its layout).
//!
//! # Guarantees
//! - A raw token is never written: only its digest (`HMAC-SHA256(server key, token)`).
//! - A record is one entry: it is written and removed whole, and carries its own expiry.
//! - A [`TokenPartition`] holds every unexpired record of its partition in memory too (on a
//!   database shared by several nodes: every record it loaded, wrote or read through), and
//!   changes the memory only after the backend took the change.
//! - Nothing a partition or the change log writes is durable until [`GroupCommit`] has flushed
//!   it; callers that promise durability wait on the [`Durable`] that [`GroupCommit::durable`]
//!   returns.
//! - Every revocation a partition makes is appended to the [`ChangeLog`] before its records go,
//!   so the flush that makes the revocation durable makes its change durable too.

pub mod backend;
mod changes;
mod clients;
#[cfg(test)]
mod contract;
pub mod copy;
mod digest_map;
mod durability;
pub mod pg;
mod records;
pub mod sled_store;
mod tokens;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backend::Backend;
pub use changes::{Change, ChangeLog, Reach, Read, Revoked, SCAN_PER_RESULT};
pub use clients::ClientRegistry;
pub use durability::{Durable, GroupCommit};
pub use records::{
    ClientRecord, CodeRecord, ConsentRecord, Record, Redeem, TokenClaims, TokenRecord, TokenType, UserRecord,
};
use sled_store::SledBackend;
pub use tokens::{Hold, MassRevocation, TokenPartition};
pub use users::UserRegistry;

/// Failures of the storage layer. Expected outcomes (not found, not the owner) are values in
/// the `Ok` side of each operation, never errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not read or write.
    #[error("storage I/O failed: {0}")]
    Io(Arc<dyn std::error::Error + Send + Sync>),
    #[error("stored record could not be decoded: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error("the stored shard count or layout is not a 4-byte number; the meta tree is damaged")]
    CorruptMeta,
    #[error("a token tree holds a key that is not a token key; the tree is damaged")]
    CorruptKey,
    #[error(
        "the data directory holds tokens in layout {found}, and this build reads layout {expected}; \
         remove its db directory to start afresh"
    )]
    UnknownLayout { found: u32, expected: u32 },
    #[error(
        "the database's schema is version {found}, and this build knows versions up to {expected}; \
         run a build at least as new"
    )]
    SchemaTooNew { found: u32, expected: u32 },
    #[error("Tessera nodes are running on this database; stop them, or go through a node's admin API")]
    DatabaseInUse,
    #[error("the data directory is in use by another process")]
    Locked,
    #[error("the flusher stopped before this write was made durable")]
    FlusherGone,
}

/// Changes the log keeps unless configured otherwise (`feed_log_max_events`).
pub const DEFAULT_LOG_CAPACITY: u64 = 1_000_000;

/// The opened store and the change log every partition shares.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    changes: Arc<ChangeLog>,
}

impl Store {
    /// Opens (or creates) the embedded store under `dir`. `cache_bytes` bounds sled's page
    /// cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::over(Arc::new(SledBackend::open(dir, cache_bytes)?))
    }

    /// Connects to the PostgreSQL store at `url`, creating or upgrading its schema, as one
    /// node among others or alone ([`pg::Holding`]).
    pub fn connect(url: &str, holding: pg::Holding) -> Result<Self, StoreError> {
        Self::over(Arc::new(pg::PgBackend::connect(url, holding)?))
    }

    /// What the backend offers nodes that share it; `None` on sled.
    pub fn shared(&self) -> Option<Arc<dyn backend::SharedDatabase>> {
        self.backend.shared()
    }

    /// A throwaway store for tests and benches.
    pub fn temporary() -> Result<Self, StoreError> {
        Self::over(Arc::new(SledBackend::temporary()?))
    }

    /// The store kept by `backend`.
    pub fn over(backend: Arc<dyn Backend>) -> Result<Self, StoreError> {
        let changes = Arc::new(ChangeLog::open(backend.changes()?, DEFAULT_LOG_CAPACITY)?);
        Ok(Self { backend, changes })
    }

    /// The log of revocations every partition appends to.
    pub fn changes(&self) -> &Arc<ChangeLog> {
        &self.changes
    }

    pub fn clients(&self) -> Result<ClientRegistry, StoreError> {
        ClientRegistry::open(self.backend.clients()?)
    }

    pub fn users(&self) -> Result<UserRegistry, StoreError> {
        Ok(UserRegistry::new(self.backend.users()?))
    }

    /// Group commit over this store (see [`GroupCommit::start`]).
    pub fn group_commit(&self, commit_delay: Duration) -> GroupCommit {
        GroupCommit::start(Arc::clone(&self.backend), commit_delay)
    }

    /// Makes every write so far durable, at once: for a process that stops.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }

    /// Token records stored, swept or not; see [`Backend::stored_tokens`].
    pub fn stored_tokens(&self) -> Result<usize, StoreError> {
        self.backend.stored_tokens()
    }

    /// The `shards` token partitions, loaded into memory (records expired at `now` stay
    /// stored for the sweeper). If the store was last used with a different shard count, each
    /// record first moves to the partition its digest now selects, so a change of `shards` in
    /// the config loses nothing. Partitions load in parallel, one thread each.
    pub fn partitions(&self, shards: usize, now: u64) -> Result<Vec<TokenPartition>, StoreError> {
        assert!(shards > 0, "shard count is validated by config");
        let logs = self.backend.partitions(shards)?;
        std::thread::scope(|s| {
            let loads: Vec<_> = logs
                .into_iter()
                .map(|log| {
                    let changes = Arc::clone(&self.changes);
                    s.spawn(move || TokenPartition::load(log, changes, now))
                })
                .collect();
            loads
                .into_iter()
                .map(|l| l.join().expect("a partition load panicked"))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{mint_token, ServerKey, TokenKind};

    #[test]
    fn repartitioning_moves_every_token_to_its_new_shard() {
        let store = Store::temporary().unwrap();
        let key = ServerKey::from_bytes(&[7; 32]).unwrap();
        let mut parts = store.partitions(3, 0).unwrap();
        let digests: Vec<_> = (0..300)
            .map(|_| key.token_digest(&mint_token(TokenKind::Access)))
            .collect();
        for (i, d) in digests.iter().enumerate() {
            if i.is_multiple_of(2) {
                parts[d.shard(3)].insert(d, TokenRecord::test_record(10_000)).unwrap();
            } else {
                parts[d.shard(3)]
                    .insert_code(d, CodeRecord::test_record(10_000))
                    .unwrap();
            }
        }
        drop(parts);
        let present = |parts: &mut [TokenPartition], n: usize, i: usize, d: &crate::crypto::TokenDigest| {
            if i.is_multiple_of(2) {
                parts[d.shard(n)].get(d).is_some()
            } else {
                matches!(
                    parts[d.shard(n)].redeem_code(d, "c", 0).unwrap(),
                    Redeem::Redeemed(_) | Redeem::AlreadyUsed(_)
                )
            }
        };
        let mut parts = store.partitions(2, 0).unwrap();
        for (i, d) in digests.iter().enumerate() {
            assert!(present(&mut parts, 2, i, d), "record {i} after 3 -> 2");
        }
        drop(parts);
        let mut parts = store.partitions(5, 0).unwrap();
        for (i, d) in digests.iter().enumerate() {
            assert!(present(&mut parts, 5, i, d), "record {i} after 2 -> 5");
        }
        assert_eq!(parts.iter().map(TokenPartition::len).sum::<usize>(), digests.len() / 2);
        let swept: usize = parts.iter_mut().map(|p| p.sweep_expired(20_000, 1000).unwrap()).sum();
        assert_eq!(swept, digests.len(), "no record was left behind or duplicated");
    }
}
