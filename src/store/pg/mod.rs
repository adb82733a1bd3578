//! The PostgreSQL backend: the same contract as sled's ([`super::backend`]), in a database that
//! operators already run, replicate and back up.
//!
//! # How it keeps the contract
//! - **Group commit is a transaction.** A partition's or the change log's write is queued in
//!   memory ([`Pending`]); [`Backend::flush`] sends them in one transaction, as at most four
//!   statements whose rows are arrays ([`Columns`]), and returns once it committed (`synchronous_commit` is on,
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

/// A batch as columns: one array per column and one statement per kind of write, so a commit
/// costs four statements however many writes it carries (a statement per write made the
/// database's CPU the limit of durable issuance).
///
/// Within one transaction the kinds can go in this order (puts, replacements, deletions,
/// changes) whatever order the writers queued them in: an entry is put before it is replaced
/// or deleted, never the other way, and ids are never reused. A replacement that comes twice
/// for one entry keeps the later one.
#[derive(Default)]
struct Columns {
    put_ids: Vec<i64>,
    put_shards: Vec<i16>,
    put_exps: Vec<i64>,
    put_kinds: Vec<i16>,
    put_digests: Vec<Vec<u8>>,
    put_records: Vec<Vec<u8>>,
    replace_ids: Vec<i64>,
    replace_records: Vec<Vec<u8>>,
    delete_ids: Vec<i64>,
    change_seqs: Vec<i64>,
    change_untils: Vec<i64>,
    changes: Vec<Vec<u8>>,
}

impl Columns {
    fn of(ops: &[Op]) -> Columns {
        let mut c = Columns::default();
        let mut replaced: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        for op in ops {
            match op {
                Op::PutEntry {
                    id,
                    shard,
                    exp,
                    kind,
                    digest,
                    record,
                } => {
                    c.put_ids.push(*id);
                    c.put_shards.push(*shard);
                    c.put_exps.push(*exp);
                    c.put_kinds.push(*kind);
                    c.put_digests.push(digest.clone());
                    c.put_records.push(record.clone());
                }
                Op::ReplaceEntry { id, record } => match replaced.get(id) {
                    Some(&at) => c.replace_records[at] = record.clone(),
                    None => {
                        replaced.insert(*id, c.replace_ids.len());
                        c.replace_ids.push(*id);
                        c.replace_records.push(record.clone());
                    }
                },
                Op::DeleteEntry { id } => c.delete_ids.push(*id),
                Op::PutChange { seq, until, change } => {
                    c.change_seqs.push(*seq);
                    c.change_untils.push(*until);
                    c.changes.push(change.clone());
                }
            }
        }
        c
    }

    /// Sends the statements this batch needs, pipelined on the one connection.
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        let mut runs = Vec::with_capacity(4);
        if !self.put_ids.is_empty() {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO tessera_entries (id, shard, exp, kind, digest, record) \
                     SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::smallint[], $5::bytea[], $6::bytea[]) \
                     ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                )
                .await?;
            runs.push((
                statement,
                vec![
                    &self.put_ids as &(dyn ToSql + Sync),
                    &self.put_shards,
                    &self.put_exps,
                    &self.put_kinds,
                    &self.put_digests,
                    &self.put_records,
                ],
            ));
        }
        if !self.replace_ids.is_empty() {
            let statement = tx
                .prepare_cached(
                    "UPDATE tessera_entries AS e SET record = v.record \
                     FROM unnest($1::bigint[], $2::bytea[]) AS v(id, record) WHERE e.id = v.id",
                )
                .await?;
            runs.push((
                statement,
                vec![&self.replace_ids as &(dyn ToSql + Sync), &self.replace_records],
            ));
        }
        if !self.delete_ids.is_empty() {
            let statement = tx
                .prepare_cached("DELETE FROM tessera_entries WHERE id = ANY($1::bigint[])")
                .await?;
            runs.push((statement, vec![&self.delete_ids as &(dyn ToSql + Sync)]));
        }
        if !self.change_seqs.is_empty() {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO tessera_changes (seq, until, change) \
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) ON CONFLICT (seq) DO NOTHING",
                )
                .await?;
            runs.push((
                statement,
                vec![
                    &self.change_seqs as &(dyn ToSql + Sync),
                    &self.change_untils,
                    &self.changes,
                ],
            ));
        }
        // In order: tokio-postgres runs pipelined statements in the order they were sent.
        futures_util::future::try_join_all(runs.iter().map(|(s, params)| tx.execute(s, params))).await?;
        Ok(())
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
        let columns = Columns::of(&batch);
        let result = self.io.run(move |mut client| async move {
            let tx = client.transaction().await?;
            columns.write(&tx).await?;
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
                    &[&partition::kind_column(super::backend::Kind::Token)],
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
