//! The storage contract ([`super::backend`]) as tests, written once for every backend. Each
//! backend's test module calls [`every_check`] with a way to open a fresh store and to reopen
//! it; what passes here is what the partitions, the change log and the registries rely on.

use super::backend::{Backend, Entry, EntryKey, Kind, Loaded, LogBounds};
use super::changes::{Change, Reach, Revoked};
use super::{ClientRecord, CodeRecord, ConsentRecord, TokenRecord, UserRecord};
use crate::crypto::{SecretDigest, TokenDigest};
use crate::vocab::GrantType;

/// Opens a fresh store, and the same store again (as after a restart).
pub trait Opener {
    fn fresh(&mut self) -> Box<dyn Backend>;
    /// The store last returned by [`fresh`](Self::fresh), reopened; the earlier handle is
    /// dropped first.
    fn reopen(&mut self, old: Box<dyn Backend>) -> Box<dyn Backend>;
}

pub fn every_check(open: &mut dyn Opener) {
    entries_round_trip_and_survive_a_reopen(open);
    a_sweep_takes_only_expired_entries_and_at_most_its_limit(open);
    partitions_keep_their_entries_apart_and_a_new_count_moves_them(open);
    change_numbers_grow_across_reopens_and_ranges_are_ordered(open);
    clients_and_users_round_trip(open);
}

fn d(n: u8) -> TokenDigest {
    TokenDigest([n; 32])
}

fn loaded(backend: &dyn Backend, shards: usize, partition: usize, now: u64) -> Vec<(EntryKey, TokenDigest, Loaded)> {
    let logs = backend.partitions(shards).unwrap();
    let mut all = Vec::new();
    logs[partition]
        .load(now, &mut |key, digest, entry| {
            all.push((key, digest, entry));
            Ok(())
        })
        .unwrap();
    all.sort_by_key(|(k, _, _)| (k.exp, k.id));
    all
}

fn entries_round_trip_and_survive_a_reopen(open: &mut dyn Opener) {
    let backend = open.fresh();
    let mut log = backend.partitions(1).unwrap().pop().unwrap();
    let token = TokenRecord::test_record(100);
    let code = CodeRecord::test_record(200);
    let t = log.put(&d(1), Entry::Token(&token)).unwrap();
    let c = log.put(&d(2), Entry::Code(&code)).unwrap();
    let f = log.put(&d(2), Entry::RevokedFamily { until: 300 }).unwrap();
    let gone = log.put(&d(3), Entry::Token(&token)).unwrap();
    assert_eq!(
        (t.exp, c.exp, f.exp),
        (100, 200, 300),
        "a key carries its entry's expiry"
    );
    let ids = [t.id, c.id, f.id, gone.id];
    assert!(
        ids.iter().enumerate().all(|(i, a)| ids[i + 1..].iter().all(|b| a != b)),
        "ids are unique: {ids:?}"
    );
    let redeemed = CodeRecord {
        redeemed: true,
        ..code.clone()
    };
    log.replace(c, &d(2), Entry::Code(&redeemed)).unwrap();
    log.delete(gone).unwrap();
    log.delete(gone).unwrap();
    log.probe().unwrap();
    drop(log);
    backend.flush().unwrap();
    assert_eq!(backend.stored_tokens().unwrap(), 1);

    let backend = open.reopen(backend);
    let all = loaded(&*backend, 1, 0, 0);
    assert_eq!(all.len(), 3, "the deleted entry stays deleted");
    assert!(matches!(&all[0], (k, dg, Loaded::Token(r)) if *k == t && *dg == d(1) && *r == token));
    assert!(matches!(&all[1], (k, dg, Loaded::Code(r)) if *k == c && *dg == d(2) && r.redeemed));
    assert!(matches!(&all[2], (k, dg, Loaded::RevokedFamily) if *k == f && *dg == d(2)));
    assert_eq!(
        loaded(&*backend, 1, 0, 150).len(),
        2,
        "a load skips what expired by `now`"
    );
    assert_eq!(loaded(&*backend, 1, 0, 300).len(), 0);
    // Ids are never reused, across a reopen too.
    let mut log = backend.partitions(1).unwrap().pop().unwrap();
    let next = log.put(&d(4), Entry::Token(&token)).unwrap();
    assert!(!ids.contains(&next.id), "id {} handed out twice", next.id);
}

fn a_sweep_takes_only_expired_entries_and_at_most_its_limit(open: &mut dyn Opener) {
    let backend = open.fresh();
    let mut log = backend.partitions(1).unwrap().pop().unwrap();
    for n in 0..10u8 {
        log.put(&d(n), Entry::Token(&TokenRecord::test_record(10 + u64::from(n))))
            .unwrap();
    }
    log.put(&d(20), Entry::Code(&CodeRecord::test_record(12))).unwrap();
    log.put(&d(21), Entry::RevokedFamily { until: 12 }).unwrap();
    let first = log.sweep(14, 3).unwrap();
    assert_eq!(first.len(), 3, "at most the limit");
    let rest = log.sweep(14, 100).unwrap();
    let mut swept: Vec<_> = first.iter().chain(&rest).map(|s| (s.kind, s.digest)).collect();
    swept.sort_by_key(|(_, dg)| dg.0);
    let mut expected: Vec<_> = (0..5u8).map(|n| (Kind::Token, d(n))).collect();
    expected.extend([(Kind::Code, d(20)), (Kind::RevokedFamily, d(21))]);
    assert_eq!(
        swept, expected,
        "everything that expired at or before 14, and nothing else"
    );
    assert!(log.sweep(14, 100).unwrap().is_empty());
    drop(log);
    assert_eq!(loaded(&*backend, 1, 0, 0).len(), 5);
}

fn partitions_keep_their_entries_apart_and_a_new_count_moves_them(open: &mut dyn Opener) {
    let backend = open.fresh();
    let digests: Vec<TokenDigest> = (0..60u8).map(|n| TokenDigest([n.wrapping_mul(37); 32])).collect();
    let mut logs = backend.partitions(3).unwrap();
    for dg in &digests {
        logs[dg.shard(3)]
            .put(dg, Entry::Token(&TokenRecord::test_record(100)))
            .unwrap();
    }
    drop(logs);
    for k in 0..3 {
        assert!(loaded(&*backend, 3, k, 0).iter().all(|(_, dg, _)| dg.shard(3) == k));
    }
    backend.flush().unwrap();
    let backend = open.reopen(backend);
    for shards in [2, 5] {
        let mut found = 0;
        for k in 0..shards {
            let here = loaded(&*backend, shards, k, 0);
            assert!(here.iter().all(|(_, dg, _)| dg.shard(shards) == k), "in its partition");
            found += here.len();
        }
        assert_eq!(
            found,
            digests.len(),
            "none lost or doubled going to {shards} partitions"
        );
    }
}

fn change(n: u8, until: u64) -> Change {
    Change {
        revoked: Revoked::Token(d(n)),
        at: 1,
        until,
        reach: Reach::Everyone,
    }
}

fn change_numbers_grow_across_reopens_and_ranges_are_ordered(open: &mut dyn Opener) {
    let backend = open.fresh();
    let log = backend.changes().unwrap();
    let head = log.head();
    assert_eq!((*head.borrow(), log.count().unwrap()), (0, 0));
    assert_eq!(log.bounds().unwrap(), LogBounds::default());
    let mut seqs = Vec::new();
    for n in 0..6u8 {
        log.append(&change(n, 100 + u64::from(n))).unwrap();
        // A flush makes the change readable on every backend, whenever it is numbered.
        backend.flush().unwrap();
        let seq = *head.borrow();
        assert!(seq > 0, "0 means before every change");
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "numbers grow: {seqs:?}");
    let after_two = log.range(seqs[1], u64::MAX, 100).unwrap();
    assert_eq!(after_two.iter().map(|c| c.0).collect::<Vec<_>>(), seqs[2..]);
    assert_eq!(after_two[0].1, change(2, 102));
    let window = log.range(seqs[0], seqs[3], 100).unwrap();
    assert_eq!(
        window.iter().map(|c| c.0).collect::<Vec<_>>(),
        seqs[1..=3],
        "upto is inclusive"
    );
    assert_eq!(log.range(0, u64::MAX, 2).unwrap().len(), 2, "limit");
    let mut expired = log.expired(102, 100).unwrap();
    expired.sort();
    assert_eq!(expired, vec![(seqs[0], 100), (seqs[1], 101), (seqs[2], 102)]);
    assert!(log.remove(seqs[0], 100).unwrap());
    assert!(!log.remove(seqs[0], 100).unwrap());
    assert_eq!(
        log.expired(102, 100).unwrap().len(),
        2,
        "removal takes the expiry index too"
    );
    log.set_bounds(LogBounds {
        floor: 3,
        pruned: seqs[0],
    })
    .unwrap();
    drop(log);
    backend.flush().unwrap();

    let backend = open.reopen(backend);
    let log = backend.changes().unwrap();
    assert_eq!(log.count().unwrap(), 5);
    assert_eq!(*log.head().borrow(), seqs[5], "the head survives a reopen");
    assert_eq!(
        log.bounds().unwrap(),
        LogBounds {
            floor: 3,
            pruned: seqs[0]
        }
    );
    log.append(&change(9, 200)).unwrap();
    backend.flush().unwrap();
    assert!(*log.head().borrow() > seqs[5], "never below a number handed out before");
}

/// A client credentials client named `id`, for tests of storage.
pub fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        secret_digest: SecretDigest([1; 32]),
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["read".into()],
        post_logout_redirect_uris: vec![],
        introspect: false,
        resource: None,
        rate_limit_per_sec: 0,
        refresh: Default::default(),
    }
}

/// A user named `name` whose `sub` is `sub-<name>`, for tests of storage.
pub fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        sub: format!("sub-{name}"),
        password_hash: "$argon2id$stub".into(),
        email: None,
        name: None,
    }
}

fn clients_and_users_round_trip(open: &mut dyn Opener) {
    let backend = open.fresh();
    let clients = backend.clients().unwrap();
    clients.put(&client("b")).unwrap();
    clients.put(&client("a")).unwrap();
    clients
        .put(&ClientRecord {
            scopes: vec!["write".into()],
            ..client("a")
        })
        .unwrap();
    assert!(clients.remove("b").unwrap());
    assert!(!clients.remove("b").unwrap());
    let users = backend.users().unwrap();
    for name in ["bob", "al", "alice"] {
        users.put(&user(name)).unwrap();
    }
    let consent = |scope: &str| ConsentRecord {
        scopes: vec![scope.into()],
        granted_at: 1,
    };
    users.put_consent("alice", "app", &consent("read")).unwrap();
    users.put_consent("alice", "app2", &consent("read")).unwrap();
    users.put_consent("al", "app", &consent("write")).unwrap();
    users.put_consent("bob", "xapp", &consent("read")).unwrap();
    assert!(users.remove("alice").unwrap());
    assert!(
        users.consent("alice", "app").unwrap().is_none(),
        "a removal takes the consents"
    );
    assert_eq!(users.forget_client("app").unwrap(), 1, "al's; bob's is another client");
    drop((clients, users));

    let backend = open.reopen(backend);
    let clients = backend.clients().unwrap().load().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].scopes, ["write"], "the last write wins");
    let users = backend.users().unwrap();
    let names: Vec<_> = users.list().unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["al", "bob"], "ordered by username");
    assert_eq!(users.get("bob").unwrap().unwrap().sub, "sub-bob");
    assert!(users.get("alice").unwrap().is_none());
    assert!(users.consent("al", "app").unwrap().is_none());
    let bob = users.consents_of("bob").unwrap();
    assert_eq!(
        (bob[0].0.as_str(), &bob[0].1.scopes[..]),
        ("xapp", &["read".to_owned()][..])
    );
}
