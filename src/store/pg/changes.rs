//! The change log in `tessera_changes` (`seq`, `origin`, `until`, the postcard `change`), and its
//! bounds in `tessera_meta` (`changes/floor`, `changes/pruned`).
//!
//! # Numbers are given at commit
//! Several nodes append to one log, and a reader polls it by number, so a number must never
//! become visible before a lower one: a reader past it would skip the lower change for good.
//! Numbers taken before the commit (a sequence, an id block) would do exactly that when two
//! nodes' commits finish out of order. So a change is queued without a number, and the
//! group commit that carries it numbers it from the row `changes/seq`: updating that row
//! takes its lock until the transaction ends, so the transactions that number changes commit
//! one after another, in the order of their numbers. When a commit returns, every change at
//! or below its highest number has committed, and the head moves there ([`Shared::publish`]).
//! Only transactions that carry changes (revocations) wait for one another; issuance does
//! not.

use std::sync::Arc;

use tokio::sync::watch;

use crate::store::backend::{ChangeStorage, LogBounds};
use crate::store::changes::Change;
use crate::store::{Record, StoreError};

use super::{Io, Op, Shared};

/// Numbers the rows of `unnest($1 until, $2 change)` from `changes/seq` and inserts them for
/// the node `$4`; `$3` is their count.
pub(super) const NUMBER: &str =
    "WITH n AS (UPDATE tessera_meta SET value = value + $3 WHERE name = 'changes/seq' RETURNING value) \
     INSERT INTO tessera_changes (seq, origin, until, change) \
     SELECT n.value - $3 + v.ord, $4, v.until, v.change \
     FROM n, unnest($1::bigint[], $2::bytea[]) WITH ORDINALITY AS v(until, change, ord) \
     RETURNING seq";

/// Changes of one commit, as columns.
#[derive(Default)]
pub(super) struct Batch {
    untils: Vec<i64>,
    changes: Vec<Vec<u8>>,
}

impl Batch {
    pub(super) fn push(&mut self, until: i64, change: Vec<u8>) {
        self.untils.push(until);
        self.changes.push(change);
    }

    /// Numbers and inserts the batch in `tx`, and returns its highest number (`None` for an
    /// empty batch).
    pub(super) async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        origin: i64,
    ) -> Result<Option<u64>, StoreError> {
        if self.changes.is_empty() {
            return Ok(None);
        }
        let count = self.changes.len() as i64;
        let statement = tx.prepare_cached(NUMBER).await?;
        let rows = tx
            .query(&statement, &[&self.untils, &self.changes, &count, &origin])
            .await?;
        if rows.len() != self.changes.len() {
            // The counter row is missing: the schema was not migrated by this build.
            return Err(StoreError::CorruptMeta);
        }
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).max())
    }
}

/// The highest number committed so far: the head at start.
pub(super) fn committed_head(io: &Io) -> Result<u64, StoreError> {
    io.run(|client| async move {
        let row = client
            .query_opt("SELECT value FROM tessera_meta WHERE name = 'changes/seq'", &[])
            .await?;
        Ok(value(row))
    })
}

pub(super) struct PgChanges {
    shared: Arc<Shared>,
}

impl PgChanges {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn value(row: Option<tokio_postgres::Row>) -> u64 {
    row.map_or(0, |r| r.get::<_, i64>(0) as u64)
}

impl ChangeStorage for PgChanges {
    fn append(&self, change: &Change) -> Result<(), StoreError> {
        self.shared.queue(Op::PutChange {
            until: change.until as i64,
            change: change.encode(),
        });
        Ok(())
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
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
        let (a, u, l) = (after as i64, upto.min(i64::MAX as u64) as i64, limit as i64);
        self.shared.io.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT seq, change FROM tessera_changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                    &[&a, &u, &l],
                )
                .await?;
            rows.into_iter()
                .map(|r| Ok((r.get::<_, i64>(0) as u64, Change::decode(r.get::<_, &[u8]>(1))?)))
                .collect::<Result<Vec<_>, StoreError>>()
        })
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
        self.shared.io.run(move |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO tessera_meta (name, value) VALUES ('changes/floor', $1), ('changes/pruned', $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&floor, &pruned],
            )
            .await?;
            // The head never falls below `pruned`, so numbering goes on above it (a copy from
            // another store sets it to that store's head, see `store::copy`).
            tx.execute(
                "UPDATE tessera_meta SET value = GREATEST(value, $1) WHERE name = 'changes/seq'",
                &[&pruned],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })?;
        self.shared.publish(bounds.pruned);
        Ok(())
    }
}
