//! The schema, created and upgraded by Tessera itself: numbered migrations, each applied once,
//! in order, in its own transaction, under an advisory lock so that nodes starting together do
//! not apply one twice. The SQL keeps to what CockroachDB and YugabyteDB accept too, except
//! the advisory lock.

use crate::store::StoreError;

use super::Io;

/// Every migration, by version (its index + 1). Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    // 1: tokens, codes and revoked families; the change log; clients, users, consents; meta.
    "CREATE TABLE tessera_entries (
         id bigint PRIMARY KEY,
         shard smallint NOT NULL,
         exp bigint NOT NULL,
         kind smallint NOT NULL,
         digest bytea NOT NULL,
         record bytea NOT NULL
     );
     CREATE INDEX tessera_entries_by_expiry ON tessera_entries (shard, exp);
     CREATE INDEX tessera_entries_by_digest ON tessera_entries (digest);
     CREATE TABLE tessera_changes (
         seq bigint PRIMARY KEY,
         until bigint NOT NULL,
         change bytea NOT NULL
     );
     CREATE INDEX tessera_changes_by_until ON tessera_changes (until, seq);
     CREATE TABLE tessera_clients (client_id text PRIMARY KEY, record bytea NOT NULL);
     CREATE TABLE tessera_users (username text PRIMARY KEY, record bytea NOT NULL);
     CREATE TABLE tessera_consents (
         username text NOT NULL,
         client_id text NOT NULL,
         record bytea NOT NULL,
         PRIMARY KEY (username, client_id)
     );
     CREATE INDEX tessera_consents_by_client ON tessera_consents (client_id);
     CREATE TABLE tessera_meta (name text PRIMARY KEY, value bigint NOT NULL);
     CREATE SEQUENCE tessera_id_blocks START WITH 1;",
    // 2: several nodes on one database. Entries name their holders, so that a node revokes
    // what another issued, and carry the mark that atomic redemptions and rotations set.
    // Changes are numbered when they commit, from `changes/seq`, and name the node that made
    // them.
    "ALTER TABLE tessera_entries
         ADD COLUMN family bytea,
         ADD COLUMN sub text,
         ADD COLUMN client_id text,
         ADD COLUMN used boolean NOT NULL DEFAULT false;
     CREATE INDEX tessera_entries_by_family ON tessera_entries (family) WHERE family IS NOT NULL;
     CREATE INDEX tessera_entries_by_sub ON tessera_entries (sub) WHERE sub IS NOT NULL;
     CREATE INDEX tessera_entries_by_client ON tessera_entries (client_id);
     ALTER TABLE tessera_changes ADD COLUMN origin bigint NOT NULL DEFAULT 0;
     INSERT INTO tessera_meta (name, value)
         SELECT 'changes/seq', greatest(
             coalesce(max(seq), 0),
             coalesce((SELECT value FROM tessera_meta WHERE name = 'changes/pruned'), 0))
         FROM tessera_changes;",
];

/// The version this build needs.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// An arbitrary constant naming Tessera's migration lock among the database's advisory locks.
const LOCK: i64 = 0x7e55_e7a0;

/// Applies every migration the database lacks; returns the versions applied. A database
/// upgraded by a newer build is refused.
pub fn migrate(io: &Io) -> Result<Vec<i32>, StoreError> {
    io.run(|mut client| async move {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS tessera_schema (version integer PRIMARY KEY)")
            .await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await?;
        let result = async {
            let row = client
                .query_one("SELECT coalesce(max(version), 0) FROM tessera_schema", &[])
                .await?;
            let found: i32 = row.get(0);
            if found > VERSION {
                return Err(StoreError::SchemaTooNew {
                    found: found as u32,
                    expected: VERSION as u32,
                });
            }
            let mut applied = Vec::new();
            for version in found + 1..=VERSION {
                let tx = client.transaction().await?;
                tx.batch_execute(MIGRATIONS[(version - 1) as usize]).await?;
                tx.execute("INSERT INTO tessera_schema (version) VALUES ($1)", &[&version])
                    .await?;
                tx.commit().await?;
                applied.push(version);
            }
            Ok(applied)
        }
        .await;
        client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await?;
        result
    })
}
