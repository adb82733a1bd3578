//! Persistent state in sled. Knows nothing of HTTP and nothing of actors.
//!
//! # Layout of the sled database (`<data_dir>/db`)
//! - tree `meta`: `shards` → the partition count the tokens are laid out for (u32, big endian);
//! - tree `clients`: `client_id` → [`ClientRecord`];
//! - tree `tokens/<k>` for each shard `k`, holding three kinds of key:
//!   - `t ‖ digest` → [`TokenRecord`] (access and refresh tokens), where `digest` is
//!     `HMAC-SHA256(server key, token)`;
//!   - `c ‖ digest` → [`CodeRecord`] (authorization codes, digested the same way);
//!   - `e ‖ exp (u64 big endian) ‖ digest` → empty: the expiry index, in expiry order, so the
//!     sweeper reads only what has expired.
//!
//! # Guarantees
//! - A raw token is never written: only its digest is a key.
//! - Every record has its expiry-index entry: the entry is written before the record and removed
//!   after it. An entry may outlive its record (a crash between the two writes); the sweeper
//!   removes it at its expiry.
//! - Nothing here is durable until [`GroupCommit`] has flushed it; callers that promise
//!   durability wait on [`GroupCommit::durable`].

mod clients;
mod durability;
mod records;
mod tokens;

use std::path::Path;

pub use clients::ClientRegistry;
pub use durability::GroupCommit;
pub use records::{ClientRecord, CodeRecord, Record, Redeem, TokenRecord, TokenType};
pub use tokens::TokenPartition;

/// Failures of the storage layer. Expected outcomes (not found, not the owner) are values in
/// the `Ok` side of each operation, never errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record could not be decoded: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error("the stored shard count is not a 4-byte number; the meta tree is damaged")]
    CorruptMeta,
    #[error("the data directory is in use by another process")]
    Locked,
    #[error("the flusher stopped before this write was made durable")]
    FlusherGone,
}

/// The opened database and its shared trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
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
        Ok(Self { db })
    }

    /// A throwaway database for tests and benches.
    pub fn temporary() -> Result<Self, StoreError> {
        Ok(Self {
            db: sled::Config::new().temporary(true).open()?,
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn clients(&self) -> Result<ClientRegistry, StoreError> {
        ClientRegistry::open(self.db.clone())
    }

    /// The `shards` token partitions, re-laid-out first if the database was last used with a
    /// different shard count. Each record moves to the partition its digest now selects, so a
    /// change of `shards` in the config loses nothing.
    pub fn partitions(&self, shards: usize) -> Result<Vec<TokenPartition>, StoreError> {
        assert!(shards > 0, "shard count is validated by config");
        let meta = self.db.open_tree("meta")?;
        let previous = match meta.get("shards")? {
            Some(v) => Some(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::CorruptMeta)?) as usize),
            None => None,
        };
        let parts: Vec<TokenPartition> = (0..shards)
            .map(|k| Ok(TokenPartition::new(self.db.open_tree(format!("tokens/{k}"))?)))
            .collect::<Result<_, StoreError>>()?;
        if let Some(old) = previous.filter(|&old| old != shards) {
            tracing::info!(from = old, to = shards, "re-partitioning tokens for a new shard count");
            for k in 0..old {
                TokenPartition::new(self.db.open_tree(format!("tokens/{k}"))?).move_misplaced(k, &parts)?;
                if k >= shards {
                    self.db.drop_tree(format!("tokens/{k}"))?;
                }
            }
        }
        meta.insert("shards", &(shards as u32).to_be_bytes())?;
        self.db.flush()?;
        Ok(parts)
    }
}

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
        let parts = store.partitions(3).unwrap();
        let digests: Vec<_> = (0..300)
            .map(|_| key.token_digest(&mint_token(TokenKind::Access)))
            .collect();
        for (i, d) in digests.iter().enumerate() {
            if i % 2 == 0 {
                parts[d.shard(3)].insert(d, &TokenRecord::test_record(10_000)).unwrap();
            } else {
                parts[d.shard(3)]
                    .insert_code(d, &CodeRecord::test_record(10_000))
                    .unwrap();
            }
        }
        let present = |parts: &[TokenPartition], n: usize, i: usize, d: &crate::crypto::TokenDigest| {
            if i % 2 == 0 {
                parts[d.shard(n)].get(d).unwrap().is_some()
            } else {
                matches!(
                    parts[d.shard(n)].redeem_code(d, 0).unwrap(),
                    Redeem::Redeemed(_) | Redeem::AlreadyUsed(_)
                )
            }
        };
        let parts = store.partitions(2).unwrap();
        for (i, d) in digests.iter().enumerate() {
            assert!(present(&parts, 2, i, d), "record {i} after 3 -> 2");
        }
        let parts = store.partitions(5).unwrap();
        for (i, d) in digests.iter().enumerate() {
            assert!(present(&parts, 5, i, d), "record {i} after 2 -> 5");
        }
        let swept: usize = parts.iter().map(|p| p.sweep_expired(20_000, 1000).unwrap()).sum();
        assert_eq!(swept, digests.len());
        assert!(
            digests.iter().all(|d| parts[d.shard(5)].get(d).unwrap().is_none()),
            "sweep found every moved expiry entry"
        );
    }
}
