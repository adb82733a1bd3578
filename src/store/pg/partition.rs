//! One partition's entries: the rows of `tessera_entries` with its `shard`. `kind` is the
//! entry's [`Kind::code`], `record` the postcard encoding (empty for a revoked family),
//! `digest` the 32-byte digest; `family`, `sub` and `client_id` are the entry's holders
//! ([`Entry::holders`]), and `used` the mark of an atomic redemption or rotation
//! ([`super::nodes`]), which a load applies to the record.

use std::sync::Arc;

use crate::crypto::TokenDigest;
use crate::store::backend::{Entry, EntryKey, Kind, Loaded, PartitionLog, Swept};
use crate::store::StoreError;

use super::{Op, Shared};

pub(super) struct PgPartition {
    shared: Arc<Shared>,
    shard: i16,
}

impl PgPartition {
    pub(super) fn new(shared: Arc<Shared>, shard: usize) -> Self {
        Self {
            shared,
            shard: shard as i16,
        }
    }
}

/// A kind as the `kind` column holds it.
pub(super) fn kind_column(kind: Kind) -> i16 {
    i16::from(kind.code())
}

pub(super) fn kind_of(column: i16) -> Option<Kind> {
    u8::try_from(column).ok().and_then(Kind::from_code)
}

pub(super) fn digest_of(bytes: &[u8]) -> Result<TokenDigest, StoreError> {
    Ok(TokenDigest(bytes.try_into().map_err(|_| StoreError::CorruptKey)?))
}

/// Records the partition count in `tessera_meta`; a store laid out for another count first
/// gives every entry the shard its digest now selects, in one transaction.
pub(super) fn lay_out(shared: &Shared, shards: usize) -> Result<(), StoreError> {
    let count = shards as i64;
    shared.flush()?;
    shared.io.run(move |mut client| async move {
        let tx = client.transaction().await?;
        let previous: Option<i64> = tx
            .query_opt("SELECT value FROM tessera_meta WHERE name = 'shards' FOR UPDATE", &[])
            .await?
            .map(|row| row.get(0));
        if previous.is_some_and(|p| p != count) {
            tracing::info!(
                from = previous,
                to = count,
                "re-partitioning tokens for a new shard count"
            );
            let rows = tx.query("SELECT id, digest FROM tessera_entries", &[]).await?;
            let mut ids = Vec::with_capacity(rows.len());
            let mut targets = Vec::with_capacity(rows.len());
            for row in rows {
                ids.push(row.get::<_, i64>(0));
                targets.push(digest_of(row.get::<_, &[u8]>(1))?.shard(shards) as i16);
            }
            tx.execute(
                "UPDATE tessera_entries AS e SET shard = v.shard \
                 FROM unnest($1::bigint[], $2::smallint[]) AS v(id, shard) WHERE e.id = v.id",
                &[&ids, &targets],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO tessera_meta (name, value) VALUES ('shards', $1) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&count],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    })
}

impl PartitionLog for PgPartition {
    fn load(
        &self,
        now: u64,
        visit: &mut dyn FnMut(EntryKey, TokenDigest, Loaded) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.shared.flush()?;
        let shard = self.shard;
        let now = now as i64;
        self.shared.io.stream(
            move |client, rows| async move {
                use futures_util::TryStreamExt;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&shard, &now];
                let stream = client
                    .query_raw(
                        "SELECT id, exp, kind, digest, record, used FROM tessera_entries WHERE shard = $1 AND exp > $2",
                        params,
                    )
                    .await?;
                let mut stream = std::pin::pin!(stream);
                while let Some(row) = stream.try_next().await? {
                    let got = (
                        row.get::<_, i64>(0),
                        row.get::<_, i64>(1),
                        row.get::<_, i16>(2),
                        row.get::<_, Vec<u8>>(3),
                        row.get::<_, Vec<u8>>(4),
                        row.get::<_, bool>(5),
                    );
                    if rows.send(got).is_err() {
                        break;
                    }
                }
                Ok(())
            },
            &mut |(id, exp, kind, digest, record, used): (i64, i64, i16, Vec<u8>, Vec<u8>, bool)| {
                let key = EntryKey {
                    exp: exp as u64,
                    id: id as u64,
                };
                let kind = kind_of(kind).ok_or(StoreError::CorruptKey)?;
                let mut entry = Loaded::decode(kind, &record)?;
                if used {
                    entry = entry.marked_used();
                }
                visit(key, digest_of(&digest)?, entry)
            },
        )
    }

    fn put(&mut self, digest: &TokenDigest, entry: Entry<'_>) -> Result<EntryKey, StoreError> {
        let key = EntryKey {
            exp: entry.exp(),
            id: self.shared.next_id()?,
        };
        let holders = entry.holders();
        self.shared.queue(Op::PutEntry {
            id: key.id as i64,
            shard: self.shard,
            exp: key.exp as i64,
            kind: kind_column(entry.kind()),
            digest: digest.0.to_vec(),
            record: entry.encode_into(Vec::new()),
            family: holders.family.map(|f| f.0.to_vec()),
            sub: holders.sub.map(str::to_owned),
            client_id: holders.client_id.map(str::to_owned),
        });
        Ok(key)
    }

    fn replace(&mut self, key: EntryKey, _digest: &TokenDigest, entry: Entry<'_>) -> Result<(), StoreError> {
        self.shared.queue(Op::ReplaceEntry {
            id: key.id as i64,
            record: entry.encode_into(Vec::new()),
        });
        Ok(())
    }

    fn delete(&mut self, key: EntryKey) -> Result<(), StoreError> {
        self.shared.queue(Op::DeleteEntry { id: key.id as i64 });
        Ok(())
    }

    fn sweep(&mut self, now: u64, limit: usize) -> Result<Vec<Swept>, StoreError> {
        self.shared.flush()?;
        let (shard, now, limit) = (self.shard, now as i64, limit as i64);
        let rows = self.shared.io.run(move |client| async move {
            let rows = client
                .query(
                    "DELETE FROM tessera_entries WHERE id IN \
                     (SELECT id FROM tessera_entries WHERE shard = $1 AND exp <= $2 ORDER BY exp LIMIT $3) \
                     RETURNING id, kind, digest",
                    &[&shard, &now, &limit],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i16>(1), r.get::<_, Vec<u8>>(2)))
                .collect::<Vec<_>>())
        })?;
        let mut swept = Vec::with_capacity(rows.len());
        for (id, kind, digest) in rows {
            let Some(kind) = kind_of(kind) else {
                continue;
            };
            swept.push(Swept {
                id: id as u64,
                kind,
                digest: digest_of(&digest)?,
            });
        }
        Ok(swept)
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.shared.io.run(|client| async move {
            client.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }
}
