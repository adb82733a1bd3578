//! The change log in sled.
//!
//! Trees: `changes`: `seq (u64 big endian)` → [`Change`]; `changes/until`: `until ‖ seq` →
//! empty, the expiry index pruning reads; in `meta`, `changes/pruned` and `changes/floor` (the
//! log's [`LogBounds`]). Numbers come from `sled::Db::generate_id`, which never hands one out
//! twice, across restarts and crashes. The log shares the database with the partitions, so one
//! flush covers a change and the removals it announces, and sled recovers its writes in order.

use crate::store::backend::{ChangeStorage, LogBounds};
use crate::store::changes::Change;
use crate::store::{Record, StoreError};

const PRUNED: &str = "changes/pruned";
const FLOOR: &str = "changes/floor";

pub(super) struct SledChanges {
    pub(super) db: sled::Db,
    pub(super) log: sled::Tree,
    pub(super) by_until: sled::Tree,
    pub(super) meta: sled::Tree,
}

fn read_u64(tree: &sled::Tree, name: &str) -> Result<u64, StoreError> {
    match tree.get(name)? {
        Some(v) => Ok(u64::from_be_bytes(
            v.as_ref().try_into().map_err(|_| StoreError::CorruptMeta)?,
        )),
        None => Ok(0),
    }
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| StoreError::CorruptKey)?))
}

fn until_key(until: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&until.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl ChangeStorage for SledChanges {
    fn next_seq(&self) -> Result<u64, StoreError> {
        // From 1: position 0 is "before every change".
        Ok(self.db.generate_id()? + 1)
    }

    fn put(&self, seq: u64, change: &Change) -> Result<(), StoreError> {
        self.by_until.insert(until_key(change.until, seq), &[])?;
        self.log.insert(seq.to_be_bytes(), change.encode())?;
        Ok(())
    }

    fn remove(&self, seq: u64, until: u64) -> Result<bool, StoreError> {
        let there = self.log.remove(seq.to_be_bytes())?.is_some();
        self.by_until.remove(until_key(until, seq))?;
        Ok(there)
    }

    fn range(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, Change)>, StoreError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        self.log
            .range((after + 1).to_be_bytes()..=upto.to_be_bytes())
            .take(limit)
            .map(|entry| {
                let (k, v) = entry?;
                Ok((seq_of(&k)?, Change::decode(&v)?))
            })
            .collect()
    }

    fn expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        self.by_until
            .range(..until_key(now, u64::MAX))
            .keys()
            .take(limit)
            .map(|k| {
                let k = k?;
                Ok((seq_of(&k[8..])?, seq_of(&k[..8])?))
            })
            .collect()
    }

    fn last(&self) -> Result<u64, StoreError> {
        match self.log.last()? {
            Some((k, _)) => seq_of(&k),
            None => Ok(0),
        }
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.log.len() as u64)
    }

    fn bounds(&self) -> Result<LogBounds, StoreError> {
        Ok(LogBounds {
            floor: read_u64(&self.meta, FLOOR)?,
            pruned: read_u64(&self.meta, PRUNED)?,
        })
    }

    fn set_bounds(&self, bounds: LogBounds) -> Result<(), StoreError> {
        self.meta.insert(FLOOR, &bounds.floor.to_be_bytes())?;
        self.meta.insert(PRUNED, &bounds.pruned.to_be_bytes())?;
        Ok(())
    }
}
