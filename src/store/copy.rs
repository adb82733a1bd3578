//! Moving an installation from one backend to another (`tessera store copy`, from sled to
//! PostgreSQL): its clients, users and consents, and every unexpired token, code and closed
//! family, so that nodes on the new store answer exactly as the old server did.
//!
//! # Guarantees
//! - **Idempotent.** Clients and users are written under their names, so a second run writes
//!   the same records again; an entry is copied only if the destination holds no entry of its
//!   kind under its digest. A copy stopped half-way is finished by running it again.
//! - **Durable when it returns**: the destination is flushed, every [`FLUSH_EVERY`] entries too,
//!   so that a large copy does not hold its writes in memory.
//! - **The source is read, never changed** (an open may re-partition it, as any open with a
//!   new shard count does, which moves no record out of it).
//! - A used refresh token stays used and a redeemed code stays redeemed: a replay after the
//!   move is still caught.
//!
//! Not copied: the change log, which is the revocation feed's history (its numbering goes on
//! above the old head, so a resource server that had read the old feed to its end reads on,
//! and one behind is told to start afresh), and the keys, which live in the
//! data directory as files (the ID-token signing keys, the feed's key and the server key that
//! digests tokens): nodes on the new store keep using that data directory's keys.

use std::collections::HashSet;

use crate::crypto::TokenDigest;

use super::backend::{Backend, Kind, LogBounds};
use super::StoreError;

/// Entries written between two flushes of the destination.
pub const FLUSH_EVERY: usize = 10_000;

/// What a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub clients: usize,
    pub users: usize,
    pub consents: usize,
    /// Tokens, codes and closed families written.
    pub entries: usize,
    /// Entries the destination held already (an earlier run copied them).
    pub present: usize,
}

/// Copies what `from` holds into `to`, both laid out in `shards` partitions (the shard count
/// the nodes will run with), leaving out entries expired at `now`.
pub fn copy(from: &dyn Backend, to: &dyn Backend, shards: usize, now: u64) -> Result<Copied, StoreError> {
    let mut copied = Copied::default();
    let (source, target) = (from.clients()?, to.clients()?);
    for client in source.load()? {
        target.put(&client)?;
        copied.clients += 1;
    }
    let (source, target) = (from.users()?, to.users()?);
    for user in source.list()? {
        target.put(&user)?;
        copied.users += 1;
        for (client_id, consent) in source.consents_of(&user.username)? {
            target.put_consent(&user.username, &client_id, &consent)?;
            copied.consents += 1;
        }
    }
    // The feed's history stays behind, but its positions go on: numbering in `to` continues
    // above `from`'s head, and a resource server behind that head is told to start afresh
    // (the floor), while one that had read everything reads on.
    let head = *from.changes()?.head().borrow();
    let log = to.changes()?;
    let bounds = log.bounds()?;
    log.set_bounds(LogBounds {
        floor: bounds.floor.max(head),
        pruned: bounds.pruned.max(head),
    })?;
    // A digest selects the same partition in both: partition k goes to partition k.
    let sources = from.partitions(shards)?;
    let mut targets = to.partitions(shards)?;
    for (source, target) in sources.iter().zip(targets.iter_mut()) {
        let mut held: HashSet<(Kind, TokenDigest)> = HashSet::new();
        target.load(now, &mut |key, digest, loaded| {
            held.insert((loaded.as_entry(key.exp).kind(), digest));
            Ok(())
        })?;
        let mut unflushed = 0;
        source.load(now, &mut |key, digest, loaded| {
            let entry = loaded.as_entry(key.exp);
            if held.contains(&(entry.kind(), digest)) {
                copied.present += 1;
                return Ok(());
            }
            target.put(&digest, entry)?;
            copied.entries += 1;
            unflushed += 1;
            if unflushed == FLUSH_EVERY {
                to.flush()?;
                unflushed = 0;
            }
            Ok(())
        })?;
    }
    to.flush()?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::backend::{Entry, EntryKey};
    use crate::store::contract::{client, user};
    use crate::store::pg::testing::TestPostgres;
    use crate::store::pg::{Holding, PgBackend};
    use crate::store::sled_store::SledBackend;
    use crate::store::{CodeRecord, ConsentRecord, TokenRecord};

    const SHARDS: usize = 2;
    const NOW: u64 = 1_000;

    /// Every entry unexpired at `NOW`, as `(partition, kind code, digest, expiry, used)`.
    fn entries(backend: &dyn Backend) -> BTreeSet<(usize, u8, [u8; 32], u64, bool)> {
        let mut all = BTreeSet::new();
        for (k, log) in backend.partitions(SHARDS).unwrap().iter().enumerate() {
            log.load(NOW, &mut |key: EntryKey, digest, loaded| {
                let entry = loaded.as_entry(key.exp);
                all.insert((k, entry.kind().code(), digest.0, key.exp, entry.used()));
                Ok(())
            })
            .unwrap();
        }
        all
    }

    fn fill(source: &SledBackend) {
        let mut moved = client("moved-client");
        moved.redirect_uris = vec!["https://app.example/cb".into()];
        source.clients().unwrap().put(&moved).unwrap();
        let users = source.users().unwrap();
        users.put(&user("alice")).unwrap();
        let consent = ConsentRecord {
            scopes: vec!["openid".into(), "read".into()],
            granted_at: 1,
        };
        users.put_consent("alice", "moved-client", &consent).unwrap();
        let mut logs = source.partitions(SHARDS).unwrap();
        let mut used = TokenRecord::test_record(5_000);
        used.claims = std::sync::Arc::new(crate::store::TokenClaims {
            token_type: crate::store::TokenType::UsedRefresh,
            ..(*used.claims).clone()
        });
        let code = CodeRecord {
            redeemed: true,
            ..CodeRecord::test_record(4_000)
        };
        logs[0]
            .put(&TokenDigest([1; 32]), Entry::Token(&TokenRecord::test_record(5_000)))
            .unwrap();
        logs[1].put(&TokenDigest([2; 32]), Entry::Token(&used)).unwrap();
        logs[0].put(&TokenDigest([3; 32]), Entry::Code(&code)).unwrap();
        // A closed family shares its digest with the code it began with.
        logs[0]
            .put(&TokenDigest([3; 32]), Entry::RevokedFamily { until: 6_000 })
            .unwrap();
        logs[1]
            .put(&TokenDigest([4; 32]), Entry::Token(&TokenRecord::test_record(NOW - 1)))
            .unwrap();
        let changes = source.changes().unwrap();
        for n in 0..3 {
            changes
                .append(&crate::store::Change {
                    revoked: crate::store::Revoked::Token(TokenDigest([10 + n; 32])),
                    at: NOW,
                    until: 5_000,
                    reach: crate::store::Reach::Everyone,
                })
                .unwrap();
        }
        source.flush().unwrap();
    }

    #[test]
    fn a_copy_to_postgres_moves_everything_live_and_a_second_run_adds_nothing() {
        let source = SledBackend::temporary().unwrap();
        fill(&source);
        let server = TestPostgres::start();
        let target = PgBackend::connect(&server.database(), Holding::Sole).unwrap();

        let first = copy(&source, &target, SHARDS, NOW).unwrap();
        assert_eq!((first.clients, first.users, first.consents), (1, 1, 1));
        assert_eq!(
            first.entries, 4,
            "two tokens, a code and a closed family; not the expired token"
        );
        let moved = entries(&target);
        assert_eq!(moved, entries(&source), "the same entries, partitions and marks");
        assert!(
            moved.iter().any(|e| e.1 == Kind::Token.code() && e.4),
            "a used refresh token stays used"
        );
        assert!(
            moved.iter().any(|e| e.1 == Kind::Code.code() && e.4),
            "a redeemed code stays redeemed"
        );
        let client = target.clients().unwrap().load().unwrap();
        assert_eq!(client.len(), 1);
        assert_eq!(client[0].redirect_uris, ["https://app.example/cb"]);
        let users = target.users().unwrap();
        assert_eq!(users.get("alice").unwrap().unwrap().sub, user("alice").sub);
        assert_eq!(
            users.consent("alice", "moved-client").unwrap().unwrap().scopes,
            ["openid", "read"]
        );

        let head = *source.changes().unwrap().head().borrow();
        assert!(head > 0);
        let log = target.changes().unwrap();
        assert_eq!(
            log.bounds().unwrap(),
            LogBounds {
                floor: head,
                pruned: head
            }
        );
        log.append(&crate::store::Change {
            revoked: crate::store::Revoked::Token(TokenDigest([20; 32])),
            at: NOW,
            until: 5_000,
            reach: crate::store::Reach::Everyone,
        })
        .unwrap();
        target.flush().unwrap();
        assert_eq!(
            *log.head().borrow(),
            head + 1,
            "the feed's numbering goes on above the old head"
        );

        let stored = target.stored_tokens().unwrap();
        let second = copy(&source, &target, SHARDS, NOW).unwrap();
        assert_eq!((second.entries, second.present), (0, 4), "{second:?}");
        assert_eq!(target.stored_tokens().unwrap(), stored, "nothing written twice");
        assert_eq!(entries(&target), moved);
    }
}
