//! What several nodes on one database need beyond the storage contract
//! ([`SharedDatabase`]): reading a token another node issued, redeeming a code and spending
//! a refresh token once across every node, reading every node's changes, and revoking what
//! other nodes issued.
//!
//! # Reads see this node's queued writes
//! A fetch must not bring back what this node removed a moment ago and has not committed yet
//! (its memory no longer holds it, so a read-through would bring it back for good). The
//! queue is read *before* the query: a removal either committed before the query ran, and the
//! row is gone, or it was still queued when the queue was read, and the row is dropped here.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use crate::crypto::TokenDigest;
use crate::store::backend::{Committed, EntryKey, Fetched, Kind, Loaded, SharedDatabase, StoredRevocation};
use crate::store::changes::{Change, Reach, Revoked};
use crate::store::{CodeRecord, Record, Redeem, StoreError, TokenRecord};

use super::changes::Batch;
use super::partition::{digest_of, kind_column};
use super::{Op, Shared};

/// Unexpired tokens among `$1` that are not in a revoked family (`$2` token, `$4` revoked
/// family kinds; `$3` now).
const FETCH: &str = "SELECT e.digest, e.id, e.exp, e.used, e.record FROM tessera_entries e \
     WHERE e.digest = ANY($1::bytea[]) AND e.kind = $2 AND e.exp > $3 \
     AND (e.family IS NULL OR NOT EXISTS \
          (SELECT 1 FROM tessera_entries f WHERE f.digest = e.family AND f.kind = $4))";

pub(super) struct Nodes {
    shared: Arc<Shared>,
}

impl Nodes {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// What this node has queued that a read must honour: the entries it removed and the
    /// families it closed.
    fn overlay(&self) -> Overlay {
        let p = self.shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = Overlay::default();
        for op in p.committing.iter().chain(&p.queued) {
            match op {
                Op::DeleteEntry { id } => {
                    o.deleted.insert(*id);
                }
                Op::PutEntry { kind, digest, .. } if *kind == kind_column(Kind::RevokedFamily) => {
                    o.closed.insert(digest.clone());
                }
                _ => {}
            }
        }
        o
    }
}

#[derive(Default)]
struct Overlay {
    deleted: HashSet<i64>,
    closed: HashSet<Vec<u8>>,
}

fn token_of(record: &[u8], used: bool) -> Result<TokenRecord, StoreError> {
    let loaded = Loaded::Token(TokenRecord::decode(record)?);
    let loaded = if used { loaded.marked_used() } else { loaded };
    match loaded {
        Loaded::Token(t) => Ok(t),
        _ => Err(StoreError::CorruptKey),
    }
}

impl SharedDatabase for Nodes {
    fn node(&self) -> u64 {
        self.shared.origin as u64
    }

    fn fetch(&self, digests: Vec<TokenDigest>, now: u64) -> BoxFuture<'static, Result<Vec<Fetched>, StoreError>> {
        let overlay = self.overlay();
        let rows = self.shared.io.call(move |client| async move {
            let digests: Vec<Vec<u8>> = digests.iter().map(|d| d.0.to_vec()).collect();
            let statement = client.prepare_cached(FETCH).await?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &digests,
                        &kind_column(Kind::Token),
                        &(now as i64),
                        &kind_column(Kind::RevokedFamily),
                    ],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    (
                        r.get::<_, Vec<u8>>(0),
                        r.get::<_, i64>(1),
                        r.get::<_, i64>(2),
                        r.get::<_, bool>(3),
                        r.get::<_, Vec<u8>>(4),
                    )
                })
                .collect::<Vec<_>>())
        });
        async move {
            let mut found = Vec::new();
            for (digest, id, exp, used, record) in rows.await? {
                if overlay.deleted.contains(&id) {
                    continue;
                }
                let record = token_of(&record, used)?;
                if record
                    .claims
                    .family
                    .is_some_and(|f| overlay.closed.contains(f.0.as_slice()))
                {
                    continue;
                }
                found.push(Fetched {
                    digest: digest_of(&digest)?,
                    key: EntryKey {
                        exp: exp as u64,
                        id: id as u64,
                    },
                    record,
                });
            }
            Ok(found)
        }
        .boxed()
    }

    fn redeem_code(
        &self,
        digest: TokenDigest,
        client_id: String,
        now: u64,
    ) -> BoxFuture<'static, Result<Redeem, StoreError>> {
        let overlay = self.overlay();
        self.shared
            .io
            .call(move |mut client| async move {
                let tx = client.transaction().await?;
                let row = tx
                    .query_opt(
                        "SELECT id, exp, used, record FROM tessera_entries \
                         WHERE digest = $1 AND kind = $2 AND client_id = $3 FOR UPDATE",
                        &[&digest.0.as_slice(), &kind_column(Kind::Code), &client_id],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(Redeem::Unknown);
                };
                let (id, exp, used) = (row.get::<_, i64>(0), row.get::<_, i64>(1) as u64, row.get::<_, bool>(2));
                if overlay.deleted.contains(&id) {
                    return Ok(Redeem::Unknown);
                }
                let record = CodeRecord::decode(row.get::<_, &[u8]>(3))?;
                if exp <= now {
                    return Ok(Redeem::Expired);
                }
                if used || record.redeemed {
                    return Ok(Redeem::AlreadyUsed(CodeRecord {
                        redeemed: true,
                        ..record
                    }));
                }
                tx.execute("UPDATE tessera_entries SET used = true WHERE id = $1", &[&id])
                    .await?;
                tx.commit().await?;
                Ok(Redeem::Redeemed(record))
            })
            .boxed()
    }

    fn spend_refresh(&self, digest: TokenDigest) -> BoxFuture<'static, Result<bool, StoreError>> {
        self.shared
            .io
            .call(move |client| async move {
                let n = client
                    .execute(
                        "UPDATE tessera_entries SET used = true WHERE digest = $1 AND kind = $2 AND NOT used",
                        &[&digest.0.as_slice(), &kind_column(Kind::Token)],
                    )
                    .await?;
                Ok(n == 1)
            })
            .boxed()
    }

    fn changes_after(&self, after: u64, limit: usize) -> BoxFuture<'static, Result<Vec<Committed>, StoreError>> {
        let shared = Arc::clone(&self.shared);
        let rows = self.shared.io.call(move |client| async move {
            let rows = client
                .query(
                    "SELECT seq, origin, change FROM tessera_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&(after as i64), &(limit as i64)],
                )
                .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(Committed {
                        seq: r.get::<_, i64>(0) as u64,
                        origin: r.get::<_, i64>(1) as u64,
                        change: Change::decode(r.get::<_, &[u8]>(2))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        });
        async move {
            let changes = rows.await?;
            // Every change up to the last one read has committed: readers may go that far.
            if let Some(last) = changes.last() {
                shared.publish(last.seq);
            }
            Ok(changes)
        }
        .boxed()
    }

    fn revoke_stored(
        &self,
        revoked: Revoked,
        until: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<StoredRevocation, StoreError>> {
        let shared = Arc::clone(&self.shared);
        let origin = self.shared.origin;
        let done = self.shared.io.call(move |mut client| async move {
            let (token, code) = (kind_column(Kind::Token), kind_column(Kind::Code));
            let tx = client.transaction().await?;
            const RETURNING: &str = "RETURNING kind, digest, used, record";
            let rows = match &revoked {
                Revoked::Token(d) => {
                    tx.query(
                        &format!("DELETE FROM tessera_entries WHERE digest = $1 AND kind = $2 {RETURNING}"),
                        &[&d.0.as_slice(), &token],
                    )
                    .await?
                }
                Revoked::Family(f) => {
                    tx.query(
                        &format!("DELETE FROM tessera_entries WHERE family = $1 AND kind = $2 {RETURNING}"),
                        &[&f.0.as_slice(), &token],
                    )
                    .await?
                }
                Revoked::Subject(sub) => {
                    tx.query(
                        &format!("DELETE FROM tessera_entries WHERE sub = $1 AND kind IN ($2, $3) {RETURNING}"),
                        &[sub, &token, &code],
                    )
                    .await?
                }
                Revoked::Client(client_id) => {
                    tx.query(
                        &format!("DELETE FROM tessera_entries WHERE client_id = $1 AND kind IN ($2, $3) {RETURNING}"),
                        &[client_id, &token, &code],
                    )
                    .await?
                }
            };
            let mut removed = StoredRevocation::default();
            let mut tokens = Vec::new();
            for row in rows {
                let (kind, digest, used) = (row.get::<_, i16>(0), row.get::<_, &[u8]>(1), row.get::<_, bool>(2));
                let record = row.get::<_, &[u8]>(3);
                if kind == token {
                    let t = token_of(record, used)?;
                    removed.families.extend(t.claims.family);
                    tokens.push(t);
                } else {
                    removed.codes += 1;
                    if used || CodeRecord::decode(record)?.redeemed {
                        removed.families.push(digest_of(digest)?);
                    }
                }
            }
            removed.tokens = tokens.len();
            removed.families.sort_by_key(|f| f.0);
            removed.families.dedup();
            let mut numbered = None;
            // A closed family is announced even when nothing stored was found: another node
            // may hold tokens of it that it has not committed yet (an exchange or a rotation
            // under way there), and only the change reaches its memory. Such a change is for
            // the nodes, not the feed: it reaches no resource server, so a user's revocation
            // reads on the feed as one event, as on sled.
            let family = matches!(revoked, Revoked::Family(_));
            if !tokens.is_empty() || family {
                let reach = if tokens.is_empty() {
                    Reach::Resources(Vec::new())
                } else {
                    Reach::of(tokens.iter().map(|t| t.claims.aud.as_deref()))
                };
                let change = Change {
                    revoked,
                    at: now,
                    until: tokens.iter().map(|t| t.exp).fold(until, u64::max),
                    reach,
                };
                let mut batch = Batch::default();
                batch.push(change.until as i64, change.encode());
                numbered = batch.write(&tx, origin).await?;
            }
            tx.commit().await?;
            Ok((removed, numbered))
        });
        async move {
            let (removed, numbered) = done.await?;
            if let Some(seq) = numbered {
                shared.publish(seq);
            }
            Ok(removed)
        }
        .boxed()
    }
}
