//! The change log in sled.
//!
//! Trees: `changes`: `seq (u64 big endian)` → [`Change`]; `changes/until`: `until ‖ seq` →
//! empty, the expiry index pruning reads; in `meta`, `changes/pruned` and `changes/floor` (the
//! log's [`LogBounds`]). Numbers come from `sled::Db::generate_id`, which never hands one out
//! twice, across restarts and crashes; the head moves as each change is appended. The log shares the database with the partitions, so one
//! flush covers a change and the removals it announces, and sled recovers its writes in order.

use tokio::sync::watch;

use crate::store::backend::{ChangeStorage, LogBounds};
use crate::store::changes::Change;
use crate::store::{Record, StoreError};

const PRUNED: &str = "changes/pruned";
const FLOOR: &str = "changes/floor";

pub(super) struct SledChanges {
    db: sled::Db,
    log: sled::Tree,
    by_until: sled::Tree,
    meta: sled::Tree,
    /// The last number appended: readable at once, since an append is applied before it
    /// returns.
    head: watch::Sender<u64>,
}

impl SledChanges {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let log = db.open_tree("changes")?;
        let meta = db.open_tree("meta")?;
        let last = match log.last()? {
            Some((k, _)) => seq_of(&k)?,
            None => 0,
        };
        // Never below what was pruned: a reader at the old head must not look like one from
        // another log.
        let (head, _) = watch::channel(last.max(read_u64(&meta, PRUNED)?));
        Ok(Self {
            db: db.clone(),
            log,
            by_until: db.open_tree("changes/until")?,
            meta,
            head,
        })
    }
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
    fn append(&self, change: &Change) -> Result<(), StoreError> {
        // From 1: position 0 is "before every change".
        let seq = self.db.generate_id()? + 1;
        self.by_until.insert(until_key(change.until, seq), &[])?;
        self.log.insert(seq.to_be_bytes(), change.encode())?;
        self.head.send_replace(seq);
        Ok(())
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
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
