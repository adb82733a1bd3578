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
//! - **Reads see queued writes.** A sweep or a load commits the queue first (they are rare); a
//!   fetch for another node's token reads the queue beside the table ([`nodes`]). The change
//!   log is read up to its head, which moves once a change committed.
//! - **Ids never repeat**: each backend takes blocks of [`ID_BLOCK`] ids from the sequence
//!   `tessera_id_blocks`, which PostgreSQL never hands out twice, across crashes too.
//! - The registries' writes commit before they return.
//! - **Several nodes per database.** Each node holds an advisory lock on its database, shared,
//!   while it runs; a management command takes it alone ([`Holding`]), so it never changes the
//!   database under a running node's memory. What nodes need of each other is in [`nodes`]
//!   and `crate::cluster`; change numbers follow commits ([`changes`]).
//!
//! The traits are synchronous and called from shard and loader threads, some of which drive
//! runtimes of their own, so every query runs on this backend's own runtime thread ([`Io`]) and
//! the caller waits on a channel.

mod changes;
mod io;
mod nodes;
mod partition;
mod registries;
mod schema;
#[doc(hidden)]
pub mod testing;

use std::sync::{Arc, Mutex};

use tokio_postgres::types::ToSql;

use super::backend::{Backend, ChangeStorage, ClientStorage, PartitionLog, SharedDatabase, UserStorage};
use super::StoreError;
pub use io::Io;

/// The advisory lock every node holds, shared, on its database for as long as it runs; a
/// management command takes it alone ([`Holding`]).
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
        family: Option<Vec<u8>>,
        sub: Option<String>,
        client_id: Option<String>,
    },
    ReplaceEntry {
        id: i64,
        record: Vec<u8>,
    },
    DeleteEntry {
        id: i64,
    },
    /// Numbered when it commits ([`changes`]).
    PutChange {
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
/// for one entry keeps the later one. Changes go last, because numbering them takes the row
/// lock that orders every node's changes ([`changes::NUMBER`]), held until the commit.
#[derive(Default)]
struct Columns {
    put_ids: Vec<i64>,
    put_shards: Vec<i16>,
    put_exps: Vec<i64>,
    put_kinds: Vec<i16>,
    put_digests: Vec<Vec<u8>>,
    put_records: Vec<Vec<u8>>,
    put_families: Vec<Option<Vec<u8>>>,
    put_subs: Vec<Option<String>>,
    put_clients: Vec<Option<String>>,
    replace_ids: Vec<i64>,
    replace_records: Vec<Vec<u8>>,
    delete_ids: Vec<i64>,
    changes: changes::Batch,
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
                    family,
                    sub,
                    client_id,
                } => {
                    c.put_ids.push(*id);
                    c.put_shards.push(*shard);
                    c.put_exps.push(*exp);
                    c.put_kinds.push(*kind);
                    c.put_digests.push(digest.clone());
                    c.put_records.push(record.clone());
                    c.put_families.push(family.clone());
                    c.put_subs.push(sub.clone());
                    c.put_clients.push(client_id.clone());
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
                Op::PutChange { until, change } => c.changes.push(*until, change.clone()),
            }
        }
        c
    }

    /// Sends the statements this batch needs, pipelined on the one connection; returns the
    /// highest number given to a change, if the batch had any.
    async fn write(&self, tx: &deadpool_postgres::Transaction<'_>, origin: i64) -> Result<Option<u64>, StoreError> {
        let mut runs = Vec::with_capacity(3);
        if !self.put_ids.is_empty() {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO tessera_entries (id, shard, exp, kind, digest, record, family, sub, client_id) \
                     SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::smallint[], $5::bytea[], \
                     $6::bytea[], $7::bytea[], $8::text[], $9::text[]) \
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
                    &self.put_families,
                    &self.put_subs,
                    &self.put_clients,
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
        // In order: tokio-postgres runs pipelined statements in the order they were sent.
        let entries = futures_util::future::try_join_all(runs.iter().map(|(s, params)| tx.execute(s, params)));
        let (_, numbered) = futures_util::future::try_join(
            async { entries.await.map_err(StoreError::from) },
            self.changes.write(tx, origin),
        )
        .await?;
        Ok(numbered)
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
    /// The change log's head: every change numbered at or below it has committed
    /// ([`changes`]).
    pub(super) head: tokio::sync::watch::Sender<u64>,
    /// This node's name in the changes it makes: random per process, so a restarted node
    /// reads its earlier changes as any other node's.
    pub(super) origin: i64,
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

    /// Moves the head up to `seq`, never down.
    pub(super) fn publish(&self, seq: u64) {
        self.head.send_if_modified(|head| {
            let higher = seq > *head;
            if higher {
                *head = seq;
            }
            higher
        });
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
        let origin = self.origin;
        let result = self.io.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let numbered = columns.write(&tx, origin).await?;
            tx.commit().await?;
            Ok(numbered)
        });
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.committing = Arc::new(Vec::new());
        match result {
            Ok(numbered) => {
                drop(p);
                if let Some(seq) = numbered {
                    self.publish(seq);
                }
                Ok(())
            }
            Err(e) => {
                let mut again = (*batch).clone();
                again.append(&mut p.queued);
                p.queued = again;
                Err(e)
            }
        }
    }
}

/// How a process holds the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// A server: one node among any number on the database.
    Node,
    /// A management command on stopped servers: refused while any node runs, so that what it
    /// changes is not missed by a node's memory.
    Sole,
}

pub struct PgBackend {
    shared: Arc<Shared>,
}

impl PgBackend {
    /// Connects to `url` (a libpq-style `postgres://` URL or key=value string), creating or
    /// upgrading the schema first.
    pub fn connect(url: &str, holding: Holding) -> Result<Self, StoreError> {
        let io = Io::start(url)?;
        schema::migrate(&io)?;
        // Nodes share the lock; a command alone takes it whole.
        if !io.hold_lock(NODE_LOCK, NODE_LOCK_WAIT, holding == Holding::Node)? {
            return Err(StoreError::DatabaseInUse);
        }
        let head = changes::committed_head(&io)?;
        Ok(Self {
            shared: Arc::new(Shared {
                io,
                pending: Mutex::new(Pending::default()),
                ids: Mutex::new(Ids { next: 0, end: 0 }),
                flushing: Mutex::new(()),
                head: tokio::sync::watch::channel(head).0,
                origin: (rand::random::<u64>() >> 1) as i64,
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

    fn shared(&self) -> Option<Arc<dyn SharedDatabase>> {
        Some(Arc::new(nodes::Nodes::new(Arc::clone(&self.shared))))
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
            Box::new(PgBackend::connect(&self.last, Holding::Node).unwrap())
        }

        fn reopen(&mut self, old: Box<dyn Backend>) -> Box<dyn Backend> {
            drop(old);
            Box::new(PgBackend::connect(&self.last, Holding::Node).unwrap())
        }
    }

    /// A runtime to await [`SharedDatabase`] futures on (they run on the backend's own).
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
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
    fn nodes_share_a_database_and_a_command_alone_waits_for_them_to_stop() {
        let server = TestPostgres::start();
        let url = server.database();
        let first = PgBackend::connect(&url, Holding::Node).unwrap();
        let second = PgBackend::connect(&url, Holding::Node).expect("nodes share the database");
        assert!(matches!(
            PgBackend::connect(&url, Holding::Sole),
            Err(StoreError::DatabaseInUse)
        ));
        drop((first, second));
        let alone = PgBackend::connect(&url, Holding::Sole).expect("free once the nodes are gone");
        assert!(matches!(
            PgBackend::connect(&url, Holding::Node),
            Err(StoreError::DatabaseInUse)
        ));
        drop(alone);
    }

    #[test]
    fn changes_are_numbered_at_commit_in_commit_order_across_nodes() {
        use crate::store::changes::{Change, Reach, Revoked};
        let server = TestPostgres::start();
        let url = server.database();
        let (a, b) = (
            PgBackend::connect(&url, Holding::Node).unwrap(),
            PgBackend::connect(&url, Holding::Node).unwrap(),
        );
        let (log_a, log_b) = (a.changes().unwrap(), b.changes().unwrap());
        let change = |n: u8| Change {
            revoked: Revoked::Token(crate::crypto::TokenDigest([n; 32])),
            at: 1,
            until: 100,
            reach: Reach::Everyone,
        };
        // Appended on A first, committed by B first: B's change gets the lower number.
        log_a.append(&change(1)).unwrap();
        log_b.append(&change(2)).unwrap();
        assert_eq!(*log_a.head().borrow(), 0, "nothing is readable before it commits");
        b.flush().unwrap();
        a.flush().unwrap();
        let (head_a, head_b) = (*log_a.head().borrow(), *log_b.head().borrow());
        assert!(head_b < head_a, "numbers follow commits: {head_b} then {head_a}");
        let shared = b.shared().unwrap();
        let rt = runtime();
        let read = rt.block_on(shared.changes_after(0, 10)).unwrap();
        assert_eq!(
            read.iter().map(|c| (c.seq, c.change.clone())).collect::<Vec<_>>(),
            [(head_b, change(2)), (head_a, change(1))]
        );
        assert_eq!(read[0].origin, shared.node());
        assert_ne!(read[1].origin, shared.node(), "A's change names A");
        assert_eq!(*log_b.head().borrow(), head_a, "a read of the log moves the head");
    }

    /// Node B may be issuing into a family from memory, not committed yet, while node A closes
    /// it and finds nothing stored: the change must still reach B, and live as long as the
    /// family is closed.
    #[test]
    fn a_closed_family_is_announced_even_when_nothing_stored_was_found() {
        use crate::store::changes::Revoked;
        let server = TestPostgres::start();
        let url = server.database();
        let (a, b) = (
            PgBackend::connect(&url, Holding::Node).unwrap(),
            PgBackend::connect(&url, Holding::Node).unwrap(),
        );
        let (on_a, on_b) = (a.shared().unwrap(), b.shared().unwrap());
        let rt = runtime();
        let family = crate::crypto::TokenDigest([7; 32]);
        let removed = rt
            .block_on(on_a.revoke_stored(Revoked::Family(family), 5000, 10))
            .unwrap();
        assert_eq!(removed.tokens, 0);
        let user = rt
            .block_on(on_a.revoke_stored(Revoked::Subject("nobody".into()), 10, 10))
            .unwrap();
        assert_eq!(user.tokens + user.codes, 0);
        let read = rt.block_on(on_b.changes_after(0, 10)).unwrap();
        assert_eq!(
            read.len(),
            1,
            "only the family's change, not the empty user's: {read:?}"
        );
        assert_eq!(read[0].origin, on_a.node());
        assert_eq!(read[0].change.revoked, Revoked::Family(family));
        assert_eq!(read[0].change.until, 5000, "as long as the family stays closed");
        let reach = &read[0].change.reach;
        assert!(
            !reach.reaches(None) && !reach.reaches(Some("https://api.example")),
            "for the nodes, not the feed: {reach:?}"
        );
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
            PgBackend::connect(&url, Holding::Node),
            Err(StoreError::SchemaTooNew { found: 999, .. })
        ));
    }
}
