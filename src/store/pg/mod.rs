//! The PostgreSQL backend: the same contract as sled's ([`super::backend`]), in a database that
//! operators already run, replicate and back up.
//!
//! # How it keeps the contract
//! - **Group commit is a transaction.** A partition's or the change log's write is queued in
//!   memory ([`Pending`]); [`Backend::flush`] sends every queued statement in one transaction,
//!   pipelined on one connection, and returns once it committed (`synchronous_commit` is on,
//!   PostgreSQL's default). Many writers share one commit, as they share one `fsync` on sled.
//!   A commit that fails puts its statements back at the head of the queue, so the next flush
//!   tries them again, in order.
//! - **Order survives a crash**: a transaction commits whole, and the queue keeps the order the
//!   writers gave it.
//! - **Reads see queued writes.** A sweep or a load commits the queue first (they are rare); the
//!   change log's ranges read the queue beside the table, because the feed reads a change the
//!   moment it is appended, before its group commit.
//! - **Ids never repeat**: each backend takes blocks of [`ID_BLOCK`] ids from the sequence
//!   `tessera_id_blocks`, which PostgreSQL never hands out twice, across crashes too.
//! - The registries' writes commit before they return.
//! - **One node per database, for now.** A node holds an advisory lock on its database while it
//!   runs, and a second one is refused ([`StoreError::DatabaseInUse`]): each node answers from
//!   its own memory, and until nodes read each other's changes, a revocation on one would not
//!   reach the other.
//!
//! The traits are synchronous and called from shard and loader threads, some of which drive
//! runtimes of their own, so every query runs on this backend's own runtime thread ([`Io`]) and
//! the caller waits on a channel.

mod changes;
mod io;
mod partition;
mod registries;
mod schema;
#[doc(hidden)]
pub mod testing;

use std::sync::{Arc, Mutex};

use tokio_postgres::types::ToSql;

use super::backend::{Backend, ChangeStorage, ClientStorage, PartitionLog, UserStorage};
use super::StoreError;
pub use io::Io;

/// The advisory lock a node holds on its database for as long as it runs.
const NODE_LOCK: i64 = 0x7e55_e7a1;

/// How long a starting node waits for the lock: a node that stopped a moment ago may still
/// hold it until PostgreSQL sees its connection close.
const NODE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Creates or upgrades the schema at `url` and nothing else; returns the versions applied and
/// the version now (`tessera migrate`).
pub fn migrate(url: &str) -> Result<(Vec<i32>, i32), StoreError> {
    let io = Io::start(url)?;
    Ok((schema::migrate(&io)?, schema::VERSION))
}

/// Ids taken from the sequence at once.
pub const ID_BLOCK: u64 = 4096;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

/// A statement waiting for the next flush.
#[derive(Debug, Clone)]
pub(super) enum Op {
    PutEntry {
        id: i64,
        shard: i16,
        exp: i64,
        kind: i16,
        digest: Vec<u8>,
        record: Vec<u8>,
    },
    ReplaceEntry {
        id: i64,
        record: Vec<u8>,
    },
    DeleteEntry {
        id: i64,
    },
    PutChange {
        seq: i64,
        until: i64,
        change: Vec<u8>,
    },
}

impl Op {
    fn sql(&self) -> &'static str {
        match self {
            Op::PutEntry { .. } => {
                "INSERT INTO tessera_entries (id, shard, exp, kind, digest, record) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record"
            }
            Op::ReplaceEntry { .. } => "UPDATE tessera_entries SET record = $2 WHERE id = $1",
            Op::DeleteEntry { .. } => "DELETE FROM tessera_entries WHERE id = $1",
            Op::PutChange { .. } => {
                "INSERT INTO tessera_changes (seq, until, change) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING"
            }
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Op::PutEntry {
                id,
                shard,
                exp,
                kind,
                digest,
                record,
            } => vec![id, shard, exp, kind, digest, record],
            Op::ReplaceEntry { id, record } => vec![id, record],
            Op::DeleteEntry { id } => vec![id],
            Op::PutChange { seq, until, change } => vec![seq, until, change],
        }
    }
}

/// The statements queued since the last flush, and those of the flush under way (still read by
/// the change log until they committed).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) queued: Vec<Op>,
    pub(super) committing: Arc<Vec<Op>>,
}

/// Where ids come from: the rest of the current block.
struct Ids {
    next: u64,
    end: u64,
}

pub(super) struct Shared {
    pub(super) io: Io,
    pub(super) pending: Mutex<Pending>,
    ids: Mutex<Ids>,
    /// Held by the flusher while it commits, so flushes never overlap and keep their order.
    flushing: Mutex<()>,
}

impl Shared {
    pub(super) fn queue(&self, op: Op) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).queued.push(op);
    }

    /// An id never handed out before.
    pub(super) fn next_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next == ids.end {
            let block: i64 = self.io.run(|client| async move {
                let row = client.query_one("SELECT nextval('tessera_id_blocks')", &[]).await?;
                Ok(row.get(0))
            })?;
            let start = (block as u64) * ID_BLOCK;
            *ids = Ids {
                next: start,
                end: start + ID_BLOCK,
            };
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Commits every queued statement in one transaction ([`Backend::flush`]).
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let batch = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.queued.is_empty() {
                return Ok(());
            }
            let batch = Arc::new(std::mem::take(&mut p.queued));
            p.committing = Arc::clone(&batch);
            batch
        };
        let ops = Arc::clone(&batch);
        let result = self.io.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let mut statements = Vec::with_capacity(4);
            for op in ops.iter() {
                if !statements.iter().any(|(sql, _)| *sql == op.sql()) {
                    statements.push((op.sql(), tx.prepare_cached(op.sql()).await?));
                }
            }
            let statement = |op: &Op| {
                statements
                    .iter()
                    .find(|(sql, _)| *sql == op.sql())
                    .map(|(_, s)| s.clone())
                    .expect("prepared above")
            };
            // Sent together: tokio-postgres pipelines them on the one connection.
            let runs = ops.iter().map(|op| {
                let s = statement(op);
                let params = op.params();
                let tx = &tx;
                async move { tx.execute(&s, &params).await }
            });
            futures_util::future::try_join_all(runs).await?;
            tx.commit().await?;
            Ok(())
        });
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.committing = Arc::new(Vec::new());
        if result.is_err() {
            let mut again = (*batch).clone();
            again.append(&mut p.queued);
            p.queued = again;
        }
        result
    }
}

pub struct PgBackend {
    shared: Arc<Shared>,
}

impl PgBackend {
    /// Connects to `url` (a libpq-style `postgres://` URL or key=value string), creating or
    /// upgrading the schema first.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let io = Io::start(url)?;
        schema::migrate(&io)?;
        // One node per database, until nodes share what they hold in memory: a second node
        // would answer from memory that the first node's revocations never reach.
        if !io.hold_lock(NODE_LOCK, NODE_LOCK_WAIT)? {
            return Err(StoreError::DatabaseInUse);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                io,
                pending: Mutex::new(Pending::default()),
                ids: Mutex::new(Ids { next: 0, end: 0 }),
                flushing: Mutex::new(()),
            }),
        })
    }
}

impl Backend for PgBackend {
    fn partitions(&self, shards: usize) -> Result<Vec<Box<dyn PartitionLog>>, StoreError> {
        partition::lay_out(&self.shared, shards)?;
        Ok((0..shards)
            .map(|k| Box::new(partition::PgPartition::new(Arc::clone(&self.shared), k)) as Box<dyn PartitionLog>)
            .collect())
    }

    fn changes(&self) -> Result<Box<dyn ChangeStorage>, StoreError> {
        Ok(Box::new(changes::PgChanges::new(Arc::clone(&self.shared))))
    }

    fn clients(&self) -> Result<Box<dyn ClientStorage>, StoreError> {
        Ok(Box::new(registries::PgClients(Arc::clone(&self.shared))))
    }

    fn users(&self) -> Result<Box<dyn UserStorage>, StoreError> {
        Ok(Box::new(registries::PgUsers(Arc::clone(&self.shared))))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush()
    }

    fn stored_tokens(&self) -> Result<usize, StoreError> {
        self.shared.flush()?;
        self.shared.io.run(|client| async move {
            let row = client
                .query_one(
                    "SELECT count(*) FROM tessera_entries WHERE kind = $1",
                    &[&partition::TOKEN],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestPostgres;
    use super::*;
    use crate::store::contract::{every_check, Opener};

    /// A database per fresh store, reconnected to on reopen.
    struct Databases<'a> {
        server: &'a TestPostgres,
        last: String,
    }

    impl Opener for Databases<'_> {
        fn fresh(&mut self) -> Box<dyn Backend> {
            self.last = self.server.database();
            Box::new(PgBackend::connect(&self.last).unwrap())
        }

        fn reopen(&mut self, old: Box<dyn Backend>) -> Box<dyn Backend> {
            drop(old);
            Box::new(PgBackend::connect(&self.last).unwrap())
        }
    }

    #[test]
    fn postgres_keeps_the_storage_contract() {
        let server = TestPostgres::start();
        every_check(&mut Databases {
            server: &server,
            last: String::new(),
        });
    }

    #[test]
    fn a_second_node_on_one_database_is_refused_until_the_first_stops() {
        let server = TestPostgres::start();
        let url = server.database();
        let first = PgBackend::connect(&url).unwrap();
        assert!(matches!(PgBackend::connect(&url), Err(StoreError::DatabaseInUse)));
        drop(first);
        PgBackend::connect(&url).expect("free once the first node is gone");
    }

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let server = TestPostgres::start();
        let url = server.database();
        let io = Io::start(&url).unwrap();
        assert_eq!(schema::migrate(&io).unwrap(), (1..=schema::VERSION).collect::<Vec<_>>());
        assert!(schema::migrate(&io).unwrap().is_empty(), "nothing twice");
        io.run(|client| async move {
            client
                .execute("INSERT INTO tessera_schema (version) VALUES (999)", &[])
                .await?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(
            PgBackend::connect(&url),
            Err(StoreError::SchemaTooNew { found: 999, .. })
        ));
    }
}
