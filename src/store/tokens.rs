//! One shard's partition of token state: every record in memory, where all reads are answered,
//! and in the backend's [`PartitionLog`], which makes the records durable.
//!
//! A `TokenPartition` is owned by exactly one `TokenShard` actor, the only reader and writer of
//! both halves, so the two cannot drift apart: a write goes to the log first and reaches memory
//! only if the log took it. Operations are synchronous and return once the backend has applied
//! them; durability is the caller's business (see `GroupCommit`).
//!
//! # Why memory answers reads
//! A sled lookup costs a tree descent, page-cache bookkeeping and a decode that allocates; at a
//! million live tokens that was about a fifth of the server's CPU under an introspection load,
//! and it grows with the tree. A hash map lookup does not grow, and the decoded claims are
//! shared, so an answer allocates nothing. sled is read once, at start, to fill the maps.
//!
//! # Entries
//! Each record is one entry of the log under an [`EntryKey`] (its expiry and an id), so the
//! backend finds expired entries without reading live ones, and the map in memory remembers
//! each record's id. A revoked family is an entry too, kept until the family's last refresh
//! token would have expired, so that nothing can be issued into it again.
//!
//! # Families
//! Every token issued from one authorization code (directly or through refresh rotation) names
//! the code's digest as its family. A partition indexes its own tokens by family, and
//! [`TokenPartition::revoke_family`] removes them and leaves a tombstone; a family's tokens may
//! live on every shard, so revoking a family is sent to all of them.
//!
//! # Revocations leave a change
//! Each revocation that removes tokens (one token, a family, a user's, a client's) first appends
//! one [`Change`] to the store's [`ChangeLog`], naming what was revoked, who could have seen it
//! (the tokens' audiences) and until when. A revocation that finds no token here leaves none:
//! no resource server can hold an answer about a token this partition never had.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::backend::{Entry, EntryKey, Fetched, Kind, Loaded, PartitionLog};
use super::changes::{Change, ChangeLog, Reach, Revoked};
use super::digest_map::DigestMap;
use super::{CodeRecord, Redeem, StoreError, TokenRecord};
use crate::crypto::TokenDigest;
use crate::store::TokenClaims;

type Hasher = ahash::RandomState;

/// What one partition took away when every token of a user or of a client was revoked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MassRevocation {
    pub tokens: usize,
    pub codes: usize,
    /// The grants those records belonged to; see [`TokenPartition::revoke_subject`].
    pub families: Vec<TokenDigest>,
}

/// A record in memory, with the id of its entry in the log (the expiry is the record's).
struct Held<R> {
    id: u64,
    record: R,
}

fn at(exp: u64, id: u64) -> EntryKey {
    EntryKey { exp, id }
}

type Families = HashMap<TokenDigest, Vec<TokenDigest>, Hasher>;
type Subjects = HashMap<String, HashSet<TokenDigest, Hasher>, Hasher>;

/// Adds a token to the family and subject indexes.
fn index(families: &mut Families, subjects: &mut Subjects, digest: &TokenDigest, record: &TokenRecord) {
    if let Some(family) = record.claims.family {
        families.entry(family).or_default().push(*digest);
    }
    if let Some(sub) = &record.claims.sub {
        match subjects.get_mut(sub.as_str()) {
            Some(set) => {
                set.insert(*digest);
            }
            None => {
                subjects.insert(sub.clone(), HashSet::from_iter([*digest]));
            }
        }
    }
}

/// The one shared copy of `claims` in `set`.
fn intern(set: &mut HashSet<Arc<TokenClaims>, Hasher>, claims: Arc<TokenClaims>) -> Arc<TokenClaims> {
    if let Some(shared) = set.get(&claims) {
        return Arc::clone(shared);
    }
    set.insert(Arc::clone(&claims));
    claims
}

pub struct TokenPartition {
    log: Box<dyn PartitionLog>,
    changes: Arc<ChangeLog>,
    tokens: DigestMap<Held<TokenRecord>>,
    codes: DigestMap<Held<CodeRecord>>,
    /// One shared copy of each distinct set of claims; see [`TokenClaims`].
    claims: HashSet<Arc<TokenClaims>, Hasher>,
    /// Family → the digests of this partition's tokens in it. Only user tokens have a family.
    families: Families,
    /// Subject → the digests of this partition's tokens issued on that user's behalf, so that a
    /// password change or a removal finds them without reading every token. A set, not a list:
    /// a user who refreshes often holds thousands (exchanged refresh tokens stay until expiry),
    /// and each removal must not scan them all.
    subjects: Subjects,
    /// Revoked families, with their tombstone.
    revoked: HashMap<TokenDigest, Tomb, Hasher>,
    /// Moves each time [`forget`](Self::forget) removes what another node revoked, so that a
    /// record read from the database before then is not held ([`hold`](Self::hold)).
    generation: u64,
    /// The segment of the maps [`forget_expired`](Self::forget_expired) visits next.
    expiry_cursor: usize,
}

/// A revoked family: refused until `until`. `id` is its entry in the log; a family another
/// node revoked has none here (its entries are that node's), only this memory of it.
#[derive(Debug, Clone, Copy)]
struct Tomb {
    id: Option<u64>,
    until: u64,
}

/// What [`TokenPartition::hold`] made of a token read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Held from now on, or held already.
    Held,
    /// Not held: the partition forgot another node's revocation since the read, which may
    /// predate it. The read itself is still as fresh as the database.
    Stale,
    /// Not held, and not to be answered: the token's family is closed.
    FamilyClosed,
}

impl TokenPartition {
    /// Reads every record of `log` into memory, except those already expired at `now`, which
    /// stay stored for the sweeper to remove.
    pub(super) fn load(log: Box<dyn PartitionLog>, changes: Arc<ChangeLog>, now: u64) -> Result<Self, StoreError> {
        let mut p = Self {
            log,
            changes,
            tokens: DigestMap::default(),
            codes: DigestMap::default(),
            claims: HashSet::default(),
            families: HashMap::default(),
            subjects: HashMap::default(),
            revoked: HashMap::default(),
            generation: 0,
            expiry_cursor: 0,
        };
        // Straight into the maps, one entry at a time: a million tokens are never all decoded
        // at once. The closure borrows the maps, and the log apart from them.
        p.log.load(now, &mut |key, digest, entry| {
            let id = key.id;
            match entry {
                Loaded::Token(mut record) => {
                    record.claims = intern(&mut p.claims, record.claims);
                    index(&mut p.families, &mut p.subjects, &digest, &record);
                    p.tokens.insert(digest, Held { id, record });
                }
                Loaded::RevokedFamily => {
                    p.revoked.insert(
                        digest,
                        Tomb {
                            id: Some(id),
                            until: key.exp,
                        },
                    );
                }
                Loaded::Code(record) => {
                    p.codes.insert(digest, Held { id, record });
                }
            }
            Ok(())
        })?;
        // A token a node issued into a family just as another node closed it may be stored
        // (a shared database); it is refused everywhere, here too.
        let closed: Vec<TokenDigest> = p
            .families
            .keys()
            .filter(|f| p.revoked.contains_key(*f))
            .copied()
            .collect();
        for family in closed {
            for digest in p.families.get(&family).cloned().unwrap_or_default() {
                p.drop_held(&digest);
            }
        }
        Ok(p)
    }

    /// Tokens held, live or expired but not yet swept.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn index(&mut self, digest: &TokenDigest, record: &TokenRecord) {
        index(&mut self.families, &mut self.subjects, digest, record);
    }

    fn unindex(&mut self, digest: &TokenDigest, record: &TokenRecord) {
        if let Some(family) = record.claims.family {
            if let Some(members) = self.families.get_mut(&family) {
                members.retain(|d| d != digest);
                if members.is_empty() {
                    self.families.remove(&family);
                }
            }
        }
        if let Some(sub) = &record.claims.sub {
            if let Some(set) = self.subjects.get_mut(sub.as_str()) {
                set.remove(digest);
                if set.is_empty() {
                    self.subjects.remove(sub.as_str());
                }
            }
        }
    }

    /// Whether `family` was revoked: no token may be issued into it any more.
    pub fn family_revoked(&self, family: &TokenDigest) -> bool {
        self.revoked.contains_key(family)
    }

    /// Removes every token of `family` held here and records the family as revoked until
    /// `until` (when its last refresh token would have expired), so that a token sent to this
    /// partition later, by a rotation already under way, is refused. Returns how many tokens
    /// were removed.
    pub fn revoke_family(&mut self, family: &TokenDigest, until: u64, now: u64) -> Result<usize, StoreError> {
        let members = self.families.get(family).cloned().unwrap_or_default();
        self.log_change(Revoked::Family(*family), &members, now)?;
        if self.revoked.get(family).is_none_or(|t| t.id.is_none()) {
            let key = self.log.put(family, Entry::RevokedFamily { until })?;
            self.revoked.insert(
                *family,
                Tomb {
                    id: Some(key.id),
                    until,
                },
            );
        }
        for digest in &members {
            self.remove(digest)?;
        }
        Ok(members.len())
    }

    /// Removes every token and authorization code issued on behalf of the user `sub` (a password
    /// change, a removal, an administrator's "revoke all"). Found through the subject index, so
    /// the cost follows the user's own records, not the partition's size.
    ///
    /// The returned families name every grant those records belonged to, including grants whose
    /// code was redeemed a moment ago: a code exchange or a refresh rotation already under way
    /// may still send new tokens of such a grant to any shard, so the caller closes each family
    /// on every shard ([`revoke_family`](Self::revoke_family)), which refuses them.
    pub fn revoke_subject(&mut self, sub: &str, now: u64) -> Result<MassRevocation, StoreError> {
        let digests: Vec<TokenDigest> = self
            .subjects
            .get(sub)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let codes = self.codes.keys_where(|held| held.record.sub == sub);
        self.log_change(Revoked::Subject(sub.to_owned()), &digests, now)?;
        self.revoke_all(&digests, &codes)
    }

    /// Removes every token and authorization code of the client `client_id` (the client was
    /// removed, or an administrator revoked everything it holds). Every token is read once: a
    /// client is not indexed (a service client may hold millions of tokens, and an index would
    /// cost more memory than the tokens). Claims are interned, so the scan compares pointers to
    /// the few claim sets of this client rather than strings. Families as for
    /// [`revoke_subject`](Self::revoke_subject).
    pub fn revoke_client(&mut self, client_id: &str, now: u64) -> Result<MassRevocation, StoreError> {
        let theirs: HashSet<*const TokenClaims, Hasher> = self
            .claims
            .iter()
            .filter(|c| c.client_id == client_id)
            .map(Arc::as_ptr)
            .collect();
        let digests = if theirs.is_empty() {
            Vec::new()
        } else {
            self.tokens
                .keys_where(|held| theirs.contains(&Arc::as_ptr(&held.record.claims)))
        };
        let codes = self.codes.keys_where(|held| held.record.client_id == client_id);
        self.log_change(Revoked::Client(client_id.to_owned()), &digests, now)?;
        self.revoke_all(&digests, &codes)
    }

    /// Appends the change that revoking `tokens` as `revoked` at `now` makes, if any token is
    /// held here.
    fn log_change(&self, revoked: Revoked, tokens: &[TokenDigest], now: u64) -> Result<(), StoreError> {
        let held: Vec<&TokenRecord> = tokens.iter().filter_map(|d| self.get(d)).collect();
        if held.is_empty() {
            return Ok(());
        }
        self.changes.append(&Change {
            revoked,
            at: now,
            until: held.iter().map(|r| r.exp).max().unwrap_or(now),
            reach: Reach::of(held.iter().map(|r| r.claims.aud.as_deref())),
        })?;
        Ok(())
    }

    /// Revokes one token (RFC 7009): logs the change, then removes the record. Returns the
    /// record, or `None` if there was none.
    pub fn revoke(&mut self, digest: &TokenDigest, now: u64) -> Result<Option<TokenRecord>, StoreError> {
        self.log_change(Revoked::Token(*digest), std::slice::from_ref(digest), now)?;
        self.remove(digest)
    }

    fn revoke_all(&mut self, tokens: &[TokenDigest], codes: &[TokenDigest]) -> Result<MassRevocation, StoreError> {
        let mut families: HashSet<TokenDigest, Hasher> = HashSet::default();
        for digest in tokens {
            if let Some(record) = self.remove(digest)? {
                families.extend(record.claims.family);
            }
        }
        for digest in codes {
            if let Some(held) = self.codes.get(digest) {
                self.log.delete(at(held.record.exp, held.id))?;
                // A redeemed code's digest is the family of the tokens it gave.
                if held.record.redeemed {
                    families.insert(*digest);
                }
                self.codes.remove(digest);
            }
        }
        Ok(MassRevocation {
            tokens: tokens.len(),
            codes: codes.len(),
            families: families.into_iter().collect(),
        })
    }

    /// The tokens held for the user `sub`, for a data-subject export.
    pub fn tokens_of_subject(&self, sub: &str) -> Vec<TokenRecord> {
        self.subjects
            .get(sub)
            .map(|set| set.iter().filter_map(|d| self.get(d)).cloned().collect())
            .unwrap_or_default()
    }

    /// Marks a refresh token as exchanged: it stays, inactive, until its expiry, so that a
    /// second presentation is seen as reuse. Returns `false` if there is no such token.
    pub fn mark_refresh_used(&mut self, digest: &TokenDigest) -> Result<bool, StoreError> {
        let Some(held) = self.tokens.get(digest) else {
            return Ok(false);
        };
        let mut claims = (*held.record.claims).clone();
        claims.token_type = super::TokenType::UsedRefresh;
        let used = TokenRecord {
            claims: Arc::new(claims),
            ..held.record.clone()
        };
        self.log.replace(at(used.exp, held.id), digest, Entry::Token(&used))?;
        let claims = self.intern(Arc::clone(&used.claims));
        let held = self.tokens.get_mut(digest).expect("present above");
        held.record = TokenRecord { claims, ..used };
        Ok(true)
    }

    fn intern(&mut self, claims: Arc<TokenClaims>) -> Arc<TokenClaims> {
        intern(&mut self.claims, claims)
    }

    /// Stores a token record.
    pub fn insert(&mut self, digest: &TokenDigest, mut record: TokenRecord) -> Result<(), StoreError> {
        let key = self.log.put(digest, Entry::Token(&record))?;
        record.claims = self.intern(record.claims);
        self.index(digest, &record);
        self.tokens.insert(*digest, Held { id: key.id, record });
        Ok(())
    }

    /// Stores an authorization code.
    pub fn insert_code(&mut self, digest: &TokenDigest, record: CodeRecord) -> Result<(), StoreError> {
        let key = self.log.put(digest, Entry::Code(&record))?;
        self.codes.insert(*digest, Held { id: key.id, record });
        Ok(())
    }

    /// Redeems an authorization code for `client_id` at `now`. The first redemption marks the
    /// code used and returns it; later ones return it as `AlreadyUsed`, so the caller can treat a
    /// replay. A code presented by another client is `Unknown` to it and stays as it was, so a
    /// client cannot burn another's code.
    pub fn redeem_code(&mut self, digest: &TokenDigest, client_id: &str, now: u64) -> Result<Redeem, StoreError> {
        let Some(held) = self.codes.get_mut(digest).filter(|h| h.record.client_id == client_id) else {
            return Ok(Redeem::Unknown);
        };
        if held.record.exp <= now {
            return Ok(Redeem::Expired);
        }
        if held.record.redeemed {
            return Ok(Redeem::AlreadyUsed(held.record.clone()));
        }
        let redeemed = CodeRecord {
            redeemed: true,
            ..held.record.clone()
        };
        self.log
            .replace(at(redeemed.exp, held.id), digest, Entry::Code(&redeemed))?;
        Ok(Redeem::Redeemed(std::mem::replace(&mut held.record, redeemed)))
    }

    /// A read of the log, for readiness: fails if the backend cannot serve reads.
    pub fn probe(&self) -> Result<(), StoreError> {
        self.log.probe()
    }

    /// The record for `digest`, live or not.
    pub fn get(&self, digest: &TokenDigest) -> Option<&TokenRecord> {
        self.tokens.get(digest).map(|h| &h.record)
    }

    /// Removes the token record for `digest` and returns it, or `None` if there was none.
    pub fn remove(&mut self, digest: &TokenDigest) -> Result<Option<TokenRecord>, StoreError> {
        let Some(held) = self.tokens.get(digest) else {
            return Ok(None);
        };
        self.log.delete(at(held.record.exp, held.id))?;
        Ok(self.drop_held(digest))
    }

    /// Takes the token `digest` out of memory only.
    fn drop_held(&mut self, digest: &TokenDigest) -> Option<TokenRecord> {
        let removed = self.tokens.remove(digest).map(|h| h.record);
        if let Some(record) = &removed {
            self.unindex(digest, record);
        }
        removed
    }

    /// See [`hold`](Self::hold).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Holds in memory a token read from a database shared with other nodes (it is already
    /// stored: nothing is written), unless its family is closed, or `generation` is given and
    /// this partition forgot another node's revocation since the read ([`generation`](Self::generation)
    /// was taken before it). A token already held stays as it is.
    pub fn hold(&mut self, fetched: Fetched, generation: Option<u64>) -> Hold {
        if self.tokens.get(&fetched.digest).is_some() {
            return Hold::Held;
        }
        if fetched.record.claims.family.is_some_and(|f| self.family_revoked(&f)) {
            return Hold::FamilyClosed;
        }
        if generation.is_some_and(|g| g != self.generation) {
            return Hold::Stale;
        }
        let mut record = fetched.record;
        record.claims = self.intern(record.claims);
        self.index(&fetched.digest, &record);
        self.tokens.insert(
            fetched.digest,
            Held {
                id: fetched.key.id,
                record,
            },
        );
        Hold::Held
    }

    /// Removes from memory what another node's revocation `change` names (that node removed
    /// the entries), and remembers a revoked family until `change.until` or `now`, whichever
    /// is later, so that a rotation under way here cannot issue into it. Returns how many
    /// tokens went.
    pub fn forget(&mut self, change: &Change, now: u64) -> usize {
        self.generation += 1;
        let digests: Vec<TokenDigest> = match &change.revoked {
            Revoked::Token(digest) => vec![*digest],
            Revoked::Family(family) => {
                self.revoked.entry(*family).or_insert(Tomb {
                    id: None,
                    until: change.until.max(now),
                });
                self.families.get(family).cloned().unwrap_or_default()
            }
            Revoked::Subject(sub) => {
                for code in self.codes.keys_where(|held| held.record.sub == *sub) {
                    self.codes.remove(&code);
                }
                self.subjects
                    .get(sub.as_str())
                    .map(|set| set.iter().copied().collect())
                    .unwrap_or_default()
            }
            Revoked::Client(client_id) => {
                for code in self.codes.keys_where(|held| held.record.client_id == *client_id) {
                    self.codes.remove(&code);
                }
                self.tokens
                    .keys_where(|held| held.record.claims.client_id == *client_id)
            }
        };
        digests.iter().filter(|d| self.drop_held(d).is_some()).count()
    }

    /// Drops from memory the expired tokens and codes of one segment of the maps, the next
    /// one at each call: the entries that another node's sweep removed from a shared database
    /// (this partition's own sweep only learns of those it removes itself). Returns how many
    /// went.
    pub fn forget_expired(&mut self, now: u64) -> usize {
        let segment = self.expiry_cursor;
        self.expiry_cursor = (segment + 1) % super::digest_map::SEGMENTS;
        let tokens = self.tokens.segment_keys_where(segment, |held| held.record.exp <= now);
        for digest in &tokens {
            self.drop_held(digest);
        }
        let codes = self.codes.segment_keys_where(segment, |held| held.record.exp <= now);
        for digest in &codes {
            self.codes.remove(digest);
        }
        tokens.len() + codes.len()
    }

    /// Removes up to `limit` records whose expiry is at or before `now`; returns how many.
    /// The backend reads only expired entries, so its cost follows the number of expired
    /// records, not the size of the partition. A sweep that finishes (removes fewer than
    /// `limit`) also drops claims that no token refers to any more.
    pub fn sweep_expired(&mut self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let swept = self.log.sweep(now, limit)?;
        for entry in &swept {
            match entry.kind {
                Kind::Token => {
                    if let Some(held) = self.tokens.remove(&entry.digest) {
                        self.unindex(&entry.digest, &held.record);
                    }
                }
                Kind::Code => {
                    self.codes.remove(&entry.digest);
                }
                Kind::RevokedFamily => {
                    if self.revoked.get(&entry.digest).and_then(|t| t.id) == Some(entry.id) {
                        self.revoked.remove(&entry.digest);
                    }
                }
            }
        }
        self.revoked.retain(|_, t| t.id.is_some() || t.until > now);
        if swept.len() < limit {
            // A count of one is this set's own copy. A reply still in flight holds another, so
            // its claims are kept until a later sweep.
            self.claims.retain(|c| Arc::strong_count(c) > 1);
        }
        Ok(swept.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn digest(b: u8) -> TokenDigest {
        TokenDigest([b; 32])
    }

    fn partition(store: &Store) -> TokenPartition {
        store.partitions(1, 0).unwrap().pop().unwrap()
    }

    #[test]
    fn insert_get_remove() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        let r = TokenRecord::test_record(100);
        p.insert(&digest(1), r.clone()).unwrap();
        assert_eq!(p.get(&digest(1)), Some(&r));
        assert_eq!(p.get(&digest(2)), None);
        assert_eq!(p.remove(&digest(1)).unwrap(), Some(r));
        assert_eq!(p.get(&digest(1)), None);
        assert_eq!(p.remove(&digest(1)).unwrap(), None);
        assert_eq!(
            p.sweep_expired(u64::MAX - 1, 10).unwrap(),
            0,
            "removal took the key from sled"
        );
    }

    #[test]
    fn a_reload_sees_what_was_written_and_not_what_was_removed() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), TokenRecord::test_record(100)).unwrap();
        p.insert(&digest(2), TokenRecord::test_record(200)).unwrap();
        p.insert(&digest(3), TokenRecord::test_record(50)).unwrap();
        p.insert_code(&digest(4), CodeRecord::test_record(100)).unwrap();
        p.remove(&digest(2)).unwrap();
        let mut again = store.partitions(1, 60).unwrap().pop().unwrap();
        assert_eq!(again.get(&digest(1)), Some(&TokenRecord::test_record(100)));
        assert_eq!(again.get(&digest(2)), None, "removed");
        assert_eq!(
            again.get(&digest(3)),
            None,
            "expired at load time, left for the sweeper"
        );
        assert_eq!(again.len(), 1);
        assert!(matches!(
            again.redeem_code(&digest(4), "c", 60).unwrap(),
            Redeem::Redeemed(_)
        ));
        assert_eq!(
            again.sweep_expired(60, 10).unwrap(),
            1,
            "the expired record is still on disk"
        );
    }

    #[test]
    fn tokens_with_equal_claims_share_one_copy() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), TokenRecord::test_record(100)).unwrap();
        p.insert(&digest(2), TokenRecord::test_record(200)).unwrap();
        let (a, b) = (p.get(&digest(1)).unwrap(), p.get(&digest(2)).unwrap());
        assert!(Arc::ptr_eq(&a.claims, &b.claims));
        assert_eq!(p.claims.len(), 1);
        assert_eq!(p.sweep_expired(1000, 10).unwrap(), 2);
        assert!(p.claims.is_empty(), "a finished sweep drops claims no token uses");
    }

    #[test]
    fn sweep_removes_only_expired_and_respects_limit() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        for i in 0..10u8 {
            p.insert(&digest(i), TokenRecord::test_record(100 + i as u64)).unwrap();
        }
        assert_eq!(p.sweep_expired(99, 100).unwrap(), 0);
        assert_eq!(p.sweep_expired(104, 3).unwrap(), 3);
        assert_eq!(p.sweep_expired(104, 100).unwrap(), 2);
        for i in 0..10u8 {
            assert_eq!(p.get(&digest(i)).is_some(), i >= 5, "token {i}");
        }
        let reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert_eq!(reloaded.len(), 5, "sweeping removed the records from sled too");
    }

    #[test]
    fn a_code_redeems_once_then_reports_replay() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        let code = CodeRecord::test_record(100);
        p.insert_code(&digest(7), code.clone()).unwrap();
        assert_eq!(p.get(&digest(7)), None, "codes and tokens are kept apart");
        assert_eq!(
            p.redeem_code(&digest(7), "c", 50).unwrap(),
            Redeem::Redeemed(code.clone())
        );
        let replay = p.redeem_code(&digest(7), "c", 51).unwrap();
        let used = CodeRecord { redeemed: true, ..code };
        assert_eq!(replay, Redeem::AlreadyUsed(used.clone()));
        assert_eq!(p.redeem_code(&digest(8), "c", 50).unwrap(), Redeem::Unknown);
        let mut reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert_eq!(
            reloaded.redeem_code(&digest(7), "c", 52).unwrap(),
            Redeem::AlreadyUsed(used),
            "the redemption is on disk"
        );
    }

    #[test]
    fn another_client_cannot_redeem_or_burn_a_code() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        let code = CodeRecord::test_record(100);
        p.insert_code(&digest(7), code.clone()).unwrap();
        assert_eq!(p.redeem_code(&digest(7), "other", 50).unwrap(), Redeem::Unknown);
        assert_eq!(p.redeem_code(&digest(7), "c", 50).unwrap(), Redeem::Redeemed(code));
    }

    fn family_record(family: u8, token_type: crate::store::TokenType, exp: u64) -> TokenRecord {
        let mut claims = TokenClaims::for_client("c", "openid");
        claims.token_type = token_type;
        claims.family = Some(digest(family));
        TokenRecord {
            claims: Arc::new(claims),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn revoking_a_family_removes_its_tokens_and_refuses_new_ones_across_restarts() {
        use crate::store::TokenType::{Access, Refresh};
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), family_record(100, Access, 1000)).unwrap();
        p.insert(&digest(2), family_record(100, Refresh, 1000)).unwrap();
        p.insert(&digest(3), family_record(101, Access, 1000)).unwrap();
        p.insert(&digest(4), TokenRecord::test_record(1000)).unwrap();
        assert_eq!(p.revoke_family(&digest(100), 5000, 1).unwrap(), 2);
        assert!(p.get(&digest(1)).is_none() && p.get(&digest(2)).is_none());
        assert!(
            p.get(&digest(3)).is_some() && p.get(&digest(4)).is_some(),
            "other families stay"
        );
        assert!(p.family_revoked(&digest(100)));
        assert!(!p.family_revoked(&digest(101)));
        assert_eq!(
            p.revoke_family(&digest(100), 5000, 1).unwrap(),
            0,
            "revoking again is harmless"
        );

        let mut reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert!(reloaded.family_revoked(&digest(100)), "the tombstone is on disk");
        assert!(reloaded.get(&digest(1)).is_none());
        assert_eq!(
            reloaded.revoke_family(&digest(101), 5000, 1).unwrap(),
            1,
            "families are indexed at load"
        );
        // Tokens expire at 1000; the tombstones at 5000 outlive them, then go too.
        assert_eq!(reloaded.sweep_expired(1000, 100).unwrap(), 1);
        assert!(reloaded.family_revoked(&digest(100)));
        assert_eq!(reloaded.sweep_expired(5000, 100).unwrap(), 2);
        assert!(!reloaded.family_revoked(&digest(100)));
    }

    #[test]
    fn a_used_refresh_token_stays_inactive_until_it_expires() {
        use crate::store::TokenType::{Refresh, UsedRefresh};
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), family_record(100, Refresh, 1000)).unwrap();
        assert!(p.get(&digest(1)).unwrap().is_live(10));
        assert!(p.mark_refresh_used(&digest(1)).unwrap());
        assert!(!p.mark_refresh_used(&digest(2)).unwrap());
        let used = p.get(&digest(1)).unwrap();
        assert_eq!(used.claims.token_type, UsedRefresh);
        assert!(!used.is_live(10));
        let reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert_eq!(reloaded.get(&digest(1)).unwrap().claims.token_type, UsedRefresh);
        assert_eq!(
            p.revoke_family(&digest(100), 2000, 1).unwrap(),
            1,
            "a used token is still in its family"
        );
    }

    #[test]
    fn expired_codes_are_refused_and_swept() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert_code(&digest(1), CodeRecord::test_record(100)).unwrap();
        p.insert(&digest(2), TokenRecord::test_record(100)).unwrap();
        assert_eq!(p.redeem_code(&digest(1), "c", 100).unwrap(), Redeem::Expired);
        assert_eq!(p.sweep_expired(100, 10).unwrap(), 2);
        assert_eq!(p.redeem_code(&digest(1), "c", 0).unwrap(), Redeem::Unknown);
        assert_eq!(p.get(&digest(2)), None);
    }

    fn fetched(d: u8, record: TokenRecord) -> Fetched {
        Fetched {
            digest: digest(d),
            key: EntryKey {
                exp: record.exp,
                id: 900 + u64::from(d),
            },
            record,
        }
    }

    #[test]
    fn a_read_through_is_held_only_if_no_revocation_was_forgotten_since_it_was_read() {
        use crate::store::changes::Reach;
        use crate::store::TokenType::Access;
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        let before = p.generation();
        assert_eq!(
            p.hold(fetched(1, TokenRecord::test_record(1000)), Some(before)),
            Hold::Held
        );
        assert!(p.get(&digest(1)).is_some());
        let change = |revoked| Change {
            revoked,
            at: 1,
            until: 1000,
            reach: Reach::Everyone,
        };
        assert_eq!(p.forget(&change(Revoked::Token(digest(1))), 1), 1);
        assert!(p.get(&digest(1)).is_none(), "another node's revocation is forgotten");
        assert_eq!(
            p.hold(fetched(2, TokenRecord::test_record(1000)), Some(before)),
            Hold::Stale,
            "read before that revocation was forgotten: it may be the one revoked"
        );
        assert!(p.get(&digest(2)).is_none());
        assert_eq!(
            p.hold(fetched(2, TokenRecord::test_record(1000)), Some(p.generation())),
            Hold::Held
        );

        // A family another node closed: its tokens go, and none is held or issued into it.
        p.insert(&digest(3), family_record(100, Access, 1000)).unwrap();
        assert_eq!(p.forget(&change(Revoked::Family(digest(100))), 1), 1);
        assert!(p.family_revoked(&digest(100)));
        assert_eq!(
            p.hold(fetched(4, family_record(100, Access, 1000)), None),
            Hold::FamilyClosed
        );
        assert_eq!(
            p.hold(fetched(5, family_record(100, Access, 1000)), Some(before)),
            Hold::FamilyClosed,
            "a closed family is refused even when the read is stale too"
        );
        assert_eq!(p.len(), 1, "only token 2 is held");
        assert_eq!(
            store.stored_tokens().unwrap(),
            1,
            "forgetting and holding write nothing: only the token inserted here is stored"
        );
        // The memory of it lasts until the change's tokens would have expired.
        p.sweep_expired(999, 10).unwrap();
        assert!(p.family_revoked(&digest(100)));
        p.sweep_expired(1000, 10).unwrap();
        assert!(!p.family_revoked(&digest(100)));
    }

    #[test]
    fn expired_tokens_another_node_swept_leave_memory_a_segment_at_a_time() {
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        for d in 0..4u8 {
            assert_eq!(
                p.hold(fetched(d, TokenRecord::test_record(100 + u64::from(d))), None),
                Hold::Held
            );
        }
        let mut forgotten = 0;
        for _ in 0..crate::store::digest_map::SEGMENTS {
            forgotten += p.forget_expired(102);
        }
        assert_eq!(forgotten, 3, "expired at 100, 101 and 102");
        assert_eq!(p.len(), 1);
        assert!(p.get(&digest(3)).is_some());
    }

    fn user_record(sub: &str, client: &str, family: u8, token_type: crate::store::TokenType) -> TokenRecord {
        let mut claims = TokenClaims::for_client(client, "openid");
        claims.token_type = token_type;
        claims.sub = Some(sub.into());
        claims.username = Some(format!("name-{sub}"));
        claims.family = Some(digest(family));
        TokenRecord {
            claims: Arc::new(claims),
            iat: 0,
            exp: 1000,
        }
    }

    #[test]
    fn revoking_a_subject_takes_its_tokens_and_codes_and_names_their_grants() {
        use crate::store::TokenType::{Access, Refresh, UsedRefresh};
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), user_record("s-alice", "app", 100, Access))
            .unwrap();
        p.insert(&digest(2), user_record("s-alice", "app", 100, UsedRefresh))
            .unwrap();
        p.insert(&digest(3), user_record("s-alice", "other", 101, Refresh))
            .unwrap();
        p.insert(&digest(4), user_record("s-bob", "app", 102, Access)).unwrap();
        p.insert(&digest(5), TokenRecord::test_record(1000)).unwrap();
        let mut redeemed = CodeRecord::test_record(1000);
        redeemed.sub = "s-alice".into();
        p.insert_code(&digest(6), redeemed).unwrap();
        assert!(matches!(
            p.redeem_code(&digest(6), "c", 1).unwrap(),
            Redeem::Redeemed(_)
        ));
        let mut pending = CodeRecord::test_record(1000);
        pending.sub = "s-alice".into();
        p.insert_code(&digest(7), pending).unwrap();
        let mut bobs = CodeRecord::test_record(1000);
        bobs.sub = "s-bob".into();
        p.insert_code(&digest(8), bobs).unwrap();

        assert_eq!(p.tokens_of_subject("s-alice").len(), 3);
        let mut r = p.revoke_subject("s-alice", 1).unwrap();
        r.families.sort_by_key(|f| f.0);
        assert_eq!((r.tokens, r.codes), (3, 2));
        assert_eq!(
            r.families,
            [digest(6), digest(100), digest(101)],
            "the grants of the tokens, and the grant of the redeemed code"
        );
        for d in [1, 2, 3] {
            assert!(p.get(&digest(d)).is_none(), "token {d}");
        }
        assert!(
            p.get(&digest(4)).is_some() && p.get(&digest(5)).is_some(),
            "others stay"
        );
        assert_eq!(p.redeem_code(&digest(7), "c", 2).unwrap(), Redeem::Unknown);
        assert!(matches!(
            p.redeem_code(&digest(8), "c", 2).unwrap(),
            Redeem::Redeemed(_)
        ));
        assert!(p.tokens_of_subject("s-alice").is_empty());
        assert_eq!(p.revoke_subject("s-alice", 1).unwrap(), MassRevocation::default());

        let mut reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert_eq!(reloaded.len(), 2, "the removals are in sled");
        assert_eq!(
            reloaded.tokens_of_subject("s-bob").len(),
            1,
            "subjects are indexed at load"
        );
        assert_eq!(reloaded.revoke_subject("s-bob", 1).unwrap().tokens, 1);
    }

    #[test]
    fn revoking_a_client_takes_every_token_and_code_it_holds() {
        use crate::store::TokenType::{Access, Refresh};
        let store = Store::temporary().unwrap();
        let mut p = partition(&store);
        p.insert(&digest(1), user_record("s-alice", "app", 100, Access))
            .unwrap();
        p.insert(&digest(2), user_record("s-alice", "app", 100, Refresh))
            .unwrap();
        p.insert(&digest(3), user_record("s-alice", "other", 101, Access))
            .unwrap();
        let service = TokenRecord {
            claims: Arc::new(TokenClaims::for_client("app", "read")),
            iat: 0,
            exp: 1000,
        };
        p.insert(&digest(4), service).unwrap();
        let mut code = CodeRecord::test_record(1000);
        code.client_id = "app".into();
        p.insert_code(&digest(5), code).unwrap();
        let r = p.revoke_client("app", 1).unwrap();
        assert_eq!((r.tokens, r.codes, r.families), (3, 1, vec![digest(100)]));
        assert!(p.get(&digest(3)).is_some(), "another client's token stays");
        assert_eq!(p.len(), 1);
        assert_eq!(p.tokens_of_subject("s-alice").len(), 1, "the subject index follows");
        assert_eq!(p.revoke_client("app", 1).unwrap(), MassRevocation::default());
        let reloaded = store.partitions(1, 0).unwrap().pop().unwrap();
        assert_eq!(reloaded.len(), 1);
    }
}
