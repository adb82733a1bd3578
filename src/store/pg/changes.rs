//! The change log in `tessera_changes` (`seq`, `until`, the postcard `change`), and its bounds
//! in `tessera_meta` (`changes/floor`, `changes/pruned`). Appends are queued for group commit
//! like the partitions' writes; a range reads the queue too, so a change is readable the moment
//! it is appended, as on sled.

use std::sync::Arc;

use crate::store::backend::{ChangeStorage, LogBounds};
use crate::store::changes::Change;
use crate::store::{Record, StoreError};

use super::{Op, Shared};

pub(super) struct PgChanges {
    shared: Arc<Shared>,
}

impl PgChanges {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Changes numbered in `(after, upto]` still queued or committing.
    fn queued(&self, after: u64, upto: u64) -> Result<Vec<(u64, Change)>, StoreError> {
        let p = self.shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.committing
            .iter()
            .chain(&p.queued)
            .filter_map(|op| match op {
                Op::PutChange { seq, change, .. } if (*seq as u64) > after && (*seq as u64) <= upto => {
                    Some(Change::decode(change).map(|c| (*seq as u64, c)))
                }
                _ => None,
            })
            .collect()
    }
}

fn value(row: Option<tokio_postgres::Row>) -> u64 {
    row.map_or(0, |r| r.get::<_, i64>(0) as u64)
}

impl ChangeStorage for PgChanges {
    fn next_seq(&self) -> Result<u64, StoreError> {
        // Ids start at one block in, so a number is never 0 ("before every change").
        self.shared.next_id()
    }

    fn put(&self, seq: u64, change: &Change) -> Result<(), StoreError> {
        self.shared.queue(Op::PutChange {
            seq: seq as i64,
            until: change.until as i64,
            change: change.encode(),
        });
        Ok(())
    }

    fn remove(&self, seq: u64, _until: u64) -> Result<bool, StoreError> {
        self.shared.flush()?;
        let seq = seq as i64;
        self.shared.io.run(move |client| async move {
            Ok(client
                .execute("DELETE FROM tessera_changes WHERE seq = $1", &[&seq])
                .await?
                == 1)
        })
    }

    fn range(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, Change)>, StoreError> {
        if after >= upto || limit == 0 {
            return Ok(Vec::new());
        }
        // The queue first: a change that commits between the two reads is then seen twice, not
        // missed, and the merge below keeps one.
        let queued = self.queued(after, upto)?;
        let (a, u, l) = (after as i64, upto.min(i64::MAX as u64) as i64, limit as i64);
        let stored = self.shared.io.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT seq, change FROM tessera_changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                    &[&a, &u, &l],
                )
                .await?;
            rows.into_iter()
                .map(|r| Ok((r.get::<_, i64>(0) as u64, Change::decode(r.get::<_, &[u8]>(1))?)))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut all: Vec<(u64, Change)> = stored.into_iter().chain(queued).collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.dedup_by_key(|(seq, _)| *seq);
        all.truncate(limit);
        Ok(all)
    }

    fn expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        self.shared.flush()?;
        let (now, limit) = (now as i64, limit as i64);
        self.shared.io.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT seq, until FROM tessera_changes WHERE until <= $1 ORDER BY until, seq LIMIT $2",
                    &[&now, &limit],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    fn last(&self) -> Result<u64, StoreError> {
        self.shared.flush()?;
        self.shared.io.run(|client| async move {
            let row = client
                .query_one("SELECT coalesce(max(seq), 0) FROM tessera_changes", &[])
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.shared.flush()?;
        self.shared.io.run(|client| async move {
            let row = client.query_one("SELECT count(*) FROM tessera_changes", &[]).await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn bounds(&self) -> Result<LogBounds, StoreError> {
        self.shared.io.run(|client| async move {
            let floor = client
                .query_opt("SELECT value FROM tessera_meta WHERE name = 'changes/floor'", &[])
                .await?;
            let pruned = client
                .query_opt("SELECT value FROM tessera_meta WHERE name = 'changes/pruned'", &[])
                .await?;
            Ok(LogBounds {
                floor: value(floor),
                pruned: value(pruned),
            })
        })
    }

    fn set_bounds(&self, bounds: LogBounds) -> Result<(), StoreError> {
        let (floor, pruned) = (bounds.floor as i64, bounds.pruned as i64);
        self.shared.io.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO tessera_meta (name, value) VALUES ('changes/floor', $1), ('changes/pruned', $2) \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    &[&floor, &pruned],
                )
                .await?;
            Ok(())
        })
    }
}
