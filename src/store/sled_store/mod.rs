//! The embedded backend: one sled database at `<data_dir>/db`.
//!
//! # Layout
//! - tree `meta`: `shards` → the partition count the tokens are laid out for (u32, big endian);
//!   `layout` → the version of the token layout (u32, big endian; now 4); the change log's
//!   bounds;
//! - tree `clients`, trees `users` and `consents` ([`registries`]);
//! - trees `changes` and `changes/until` ([`changes`]);
//! - tree `tokens/<k>` for each partition `k` ([`partition`]).
//!
//! Group commit owns every flush of the partitions and the change log; sled's own flush timer
//! is off.

mod changes;
mod partition;
mod registries;

use std::path::Path;

use super::backend::{Backend, ChangeStorage, ClientStorage, PartitionLog, UserStorage};
use super::StoreError;

/// The version of the token layout this build writes and reads. 4: token claims carry the
/// user's name, the token's family and the authentication time.
const LAYOUT: u32 = 4;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(std::sync::Arc::new(e))
    }
}

pub struct SledBackend {
    db: sled::Db,
}

impl SledBackend {
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
                other => other.into(),
            })?;
        Ok(Self { db })
    }

    /// A throwaway database, removed when dropped.
    pub fn temporary() -> Result<Self, StoreError> {
        Ok(Self {
            db: sled::Config::new().temporary(true).open()?,
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

    #[cfg(test)]
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }
}

impl Backend for SledBackend {
    fn partitions(&self, shards: usize) -> Result<Vec<Box<dyn PartitionLog>>, StoreError> {
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
                return Err(StoreError::UnknownLayout {
                    found,
                    expected: LAYOUT,
                });
            }
        }
        let trees: Vec<sled::Tree> = (0..shards)
            .map(|k| self.db.open_tree(format!("tokens/{k}")))
            .collect::<Result<_, _>>()?;
        if let Some(old) = previous.filter(|&old| old != shards) {
            tracing::info!(from = old, to = shards, "re-partitioning tokens for a new shard count");
            for k in 0..old {
                partition::move_misplaced(&self.db.open_tree(format!("tokens/{k}"))?, k, &trees)?;
                if k >= shards {
                    self.db.drop_tree(format!("tokens/{k}"))?;
                }
            }
        }
        meta.insert("layout", &LAYOUT.to_be_bytes())?;
        meta.insert("shards", &(shards as u32).to_be_bytes())?;
        self.db.flush()?;
        Ok(trees
            .into_iter()
            .map(|tree| {
                Box::new(partition::SledPartition {
                    db: self.db.clone(),
                    tree,
                }) as Box<dyn PartitionLog>
            })
            .collect())
    }

    fn changes(&self) -> Result<Box<dyn ChangeStorage>, StoreError> {
        Ok(Box::new(changes::SledChanges::open(&self.db)?))
    }

    fn clients(&self) -> Result<Box<dyn ClientStorage>, StoreError> {
        Ok(Box::new(registries::SledClients {
            db: self.db.clone(),
            tree: self.db.open_tree("clients")?,
        }))
    }

    fn users(&self) -> Result<Box<dyn UserStorage>, StoreError> {
        Ok(Box::new(registries::SledUsers {
            db: self.db.clone(),
            users: self.db.open_tree("users")?,
            consents: self.db.open_tree("consents")?,
        }))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn stored_tokens(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for name in self.db.tree_names() {
            if name.starts_with(b"tokens/") {
                for v in self.db.open_tree(name)?.iter().values() {
                    count += usize::from(partition::is_token(&v?));
                }
            }
        }
        Ok(count)
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
    use crate::store::contract::{every_check, Opener};
    use crate::store::Store;
    use std::sync::Arc;

    /// Fresh stores in temporary directories, reopened from the same directory.
    #[derive(Default)]
    struct Dirs(Vec<tempfile::TempDir>);

    impl Opener for Dirs {
        fn fresh(&mut self) -> Box<dyn Backend> {
            self.0.push(tempfile::tempdir().unwrap());
            Box::new(SledBackend::open(self.0.last().unwrap().path(), 1 << 20).unwrap())
        }

        fn reopen(&mut self, old: Box<dyn Backend>) -> Box<dyn Backend> {
            drop(old);
            Box::new(SledBackend::open(self.0.last().unwrap().path(), 1 << 20).unwrap())
        }
    }

    #[test]
    fn sled_keeps_the_storage_contract() {
        every_check(&mut Dirs::default());
    }

    #[test]
    fn a_second_open_of_one_directory_is_refused_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledBackend::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(
            SledBackend::open(dir.path(), 1 << 20),
            Err(StoreError::Locked)
        ));
    }

    #[test]
    fn a_store_with_tokens_in_the_old_layout_is_refused() {
        let sled = Arc::new(SledBackend::temporary().unwrap());
        let store = Store::over(sled.clone()).unwrap();
        let meta = sled.db().open_tree("meta").unwrap();
        meta.insert("shards", &1u32.to_be_bytes()).unwrap();
        let old = sled.db().open_tree("tokens/0").unwrap();
        old.insert([b't'; 33], &b"record"[..]).unwrap();
        assert!(matches!(
            store.partitions(1, 0),
            Err(StoreError::UnknownLayout { found: 1, .. })
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
            Err(StoreError::UnknownLayout { found: 9, .. })
        ));
    }

    #[test]
    fn a_key_that_is_not_a_token_key_is_reported_not_skipped() {
        let sled = Arc::new(SledBackend::temporary().unwrap());
        let store = Store::over(sled.clone()).unwrap();
        drop(store.partitions(1, 0).unwrap());
        sled.db()
            .open_tree("tokens/0")
            .unwrap()
            .insert(b"junk", &b"x"[..])
            .unwrap();
        assert!(matches!(store.partitions(1, 0), Err(StoreError::CorruptKey)));
    }
}
