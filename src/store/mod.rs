//! Persistent state in sled. Knows nothing of HTTP and nothing of actors.
//!
//! # Layout of the sled database (`<data_dir>/db`)
//! - tree `meta`: `shards` → the partition count the tokens are laid out for (u32, big endian);
//!   `layout` → the version of the token layout below (u32, big endian; now 4);
//! - tree `clients`: `client_id` → [`ClientRecord`];
//! - tree `users`: `username` → [`UserRecord`] (password as an argon2id hash); tree `consents`:
//!   `username ‖ 0 ‖ client_id` → [`ConsentRecord`];
//! - trees `changes` and `changes/until`: the log of revocations ([`ChangeLog`]);
//! - tree `tokens/<k>` for each shard `k`: `exp (u64 big endian) ‖ id (u64 big endian)` →
//!   `kind ‖ digest ‖ record`, where `kind` is `t` for a [`TokenRecord`] (access and refresh
//!   tokens) and `c` for a [`CodeRecord`] (authorization codes), `digest` is
//!   `HMAC-SHA256(server key, token)`, and `id` is unique in the database.
//!
//! # Guarantees
//! - A raw token is never written: only its digest.
//! - A record is one key: it is written and removed whole, and carries its own expiry.
//! - A [`TokenPartition`] holds every unexpired record of its tree in memory too, and changes the
//!   memory only after sled accepted the change.
//! - Nothing here is durable until [`GroupCommit`] has flushed it; callers that promise
//!   durability wait on the [`Durable`] that [`GroupCommit::durable`] returns.
//! - Every revocation a partition makes is appended to the [`ChangeLog`] before its records go,
//!   so the flush that makes the revocation durable makes its change durable too.

mod changes;
mod clients;
mod digest_map;
mod durability;
mod records;
mod tokens;
mod users;

use std::path::Path;
use std::sync::Arc;

pub use changes::{Change, ChangeLog, Reach, Read, Revoked, SCAN_PER_RESULT};
pub use clients::ClientRegistry;
pub use durability::{Durable, GroupCommit};
pub use records::{
    ClientRecord, CodeRecord, ConsentRecord, Record, Redeem, TokenClaims, TokenRecord, TokenType, UserRecord,
};
pub use tokens::{MassRevocation, TokenPartition};
pub use users::UserRegistry;

/// Failures of the storage layer. Expected outcomes (not found, not the owner) are values in
/// the `Ok` side of each operation, never errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record could not be decoded: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error("the stored shard count or layout is not a 4-byte number; the meta tree is damaged")]
    CorruptMeta,
    #[error("a token tree holds a key that is not a token key; the tree is damaged")]
    CorruptKey,
    #[error(
        "the data directory holds tokens in layout {found}, and this build reads layout {LAYOUT}; \
         remove its db directory to start afresh"
    )]
    UnknownLayout { found: u32 },
    #[error("the data directory is in use by another process")]
    Locked,
    #[error("the flusher stopped before this write was made durable")]
    FlusherGone,
}

/// Changes the log keeps unless configured otherwise (`feed_log_max_events`).
pub const DEFAULT_LOG_CAPACITY: u64 = 1_000_000;

/// The opened database and its shared trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    changes: Arc<ChangeLog>,
}

impl Store {
    /// Opens (or creates) the database under `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Group commit owns every flush. sled's own timer would only blur what the crash test
            // checks: with it on, a missing durability wait still mostly survives a SIGKILL.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if is_lock_error(io) => StoreError::Locked,
                other => StoreError::Sled(other),
            })?;
        Self::over(db)
    }

    /// A throwaway database for tests and benches.
    pub fn temporary() -> Result<Self, StoreError> {
        Self::over(sled::Config::new().temporary(true).open()?)
    }

    fn over(db: sled::Db) -> Result<Self, StoreError> {
        let changes = Arc::new(ChangeLog::open(db.clone(), DEFAULT_LOG_CAPACITY)?);
        Ok(Self { db, changes })
    }

    /// The log of revocations every partition appends to.
    pub fn changes(&self) -> &Arc<ChangeLog> {
        &self.changes
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn clients(&self) -> Result<ClientRegistry, StoreError> {
        ClientRegistry::open(self.db.clone())
    }

    pub fn users(&self) -> Result<UserRegistry, StoreError> {
        UserRegistry::open(self.db.clone())
    }

    /// The `shards` token partitions, loaded into memory (records expired at `now` stay on
    /// disk for the sweeper). If the database was last used with a different shard count, each
    /// record first moves to the partition its digest now selects, so a change of `shards` in
    /// the config loses nothing. Partitions load in parallel, one thread each.
    pub fn partitions(&self, shards: usize, now: u64) -> Result<Vec<TokenPartition>, StoreError> {
        assert!(shards > 0, "shard count is validated by config");
        let meta = self.db.open_tree("meta")?;
        let read_u32 = |name: &str| -> Result<Option<u32>, StoreError> {
            match meta.get(name)? {
                Some(v) => Ok(Some(u32::from_be_bytes(
                    v.as_ref().try_into().map_err(|_| StoreError::CorruptMeta)?,
                ))),
                None => Ok(None),
            }
        };
        let previous = read_u32("shards")?.map(|n| n as usize);
        // Builds before layout 2 wrote `shards` and no `layout`. Without tokens there is nothing
        // to read in an old layout, so only a store that holds tokens is refused.
        let found = read_u32("layout")?.unwrap_or(1);
        if let Some(old) = previous {
            if found != LAYOUT && !self.token_trees_empty(old)? {
                return Err(StoreError::UnknownLayout { found });
            }
        }
        let trees: Vec<sled::Tree> = (0..shards)
            .map(|k| self.db.open_tree(format!("tokens/{k}")))
            .collect::<Result<_, _>>()?;
        if let Some(old) = previous.filter(|&old| old != shards) {
            tracing::info!(from = old, to = shards, "re-partitioning tokens for a new shard count");
            for k in 0..old {
                tokens::move_misplaced(&self.db.open_tree(format!("tokens/{k}"))?, k, &trees)?;
                if k >= shards {
                    self.db.drop_tree(format!("tokens/{k}"))?;
                }
            }
        }
        meta.insert("layout", &LAYOUT.to_be_bytes())?;
        meta.insert("shards", &(shards as u32).to_be_bytes())?;
        self.db.flush()?;
        std::thread::scope(|s| {
            let loads: Vec<_> = trees
                .into_iter()
                .map(|tree| {
                    let db = self.db.clone();
                    let changes = Arc::clone(&self.changes);
                    s.spawn(move || TokenPartition::load(db, tree, changes, now))
                })
                .collect();
            loads
                .into_iter()
                .map(|l| l.join().expect("a partition load panicked"))
                .collect()
        })
    }

    fn token_trees_empty(&self, count: usize) -> Result<bool, StoreError> {
        for k in 0..count {
            if !self.db.open_tree(format!("tokens/{k}"))?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The version of the token layout this build writes and reads. 4: token claims carry the
/// user's name, the token's family and the authentication time.
const LAYOUT: u32 = 4;

/// sled 0.34 reports a held lock as `ErrorKind::Other` with this message (config.rs,
/// `try_lock`); there is no more specific signal to match on.
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
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

    #[test]
    fn a_store_with_tokens_in_the_old_layout_is_refused() {
        let store = Store::temporary().unwrap();
        let meta = store.db().open_tree("meta").unwrap();
        meta.insert("shards", &1u32.to_be_bytes()).unwrap();
        let old = store.db().open_tree("tokens/0").unwrap();
        old.insert([b't'; 33], &b"record"[..]).unwrap();
        assert!(matches!(
            store.partitions(1, 0),
            Err(StoreError::UnknownLayout { found: 1 })
        ));
        old.clear().unwrap();
        assert_eq!(
            store.partitions(1, 0).unwrap().len(),
            1,
            "an empty old store is taken over"
        );
        meta.insert("layout", &9u32.to_be_bytes()).unwrap();
        old.insert([b't'; 16], &b"record"[..]).unwrap();
        assert!(matches!(
            store.partitions(1, 0),
            Err(StoreError::UnknownLayout { found: 9 })
        ));
    }
}
