//! The storage interface: what the token partitions, the change log, the registries and group
//! commit ask of durable storage, and nothing of how it is kept.
//!
//! A backend stores records and makes them durable; it decides nothing. What is active, what
//! was used, who may see what: all of that stays above, in the partitions and the registries,
//! which hold their state in memory and write through these traits. So a backend is small, and
//! each one is held to the same contract by the same tests.
//!
//! # The contract
//! - **Writes are applied, then made durable.** Every write method returns once the backend
//!   has taken the write; it is durable once a later [`Backend::flush`] has returned (group
//!   commit calls it for many writers at once). The registries' writes are the exception: they
//!   are rare, and each returns durable.
//! - **Reads see every write applied before them**, flushed or not (a load, a sweep, a
//!   range of the change log).
//! - **Order survives a crash.** If a crash keeps a write, it keeps every write the same caller
//!   made before it. The change log relies on it: a change is written before the removals it
//!   announces, so no removal survives without its change.
//! - **Expected outcomes are values** (`Ok(false)`, `Ok(None)`, an empty list); `Err` is for
//!   storage that failed or bytes that are not a record.
//! - **Digests, never tokens.** Every key a backend sees is a digest or an id; no raw token or
//!   secret reaches it.
//! - **Entries carry their expiry**, so a backend can find the expired ones without reading
//!   the rest ([`PartitionLog::sweep`], [`ChangeStorage::expired`]).
//!
//! sled ([`super::sled_store`]) is the embedded backend.

use crate::crypto::TokenDigest;

use super::changes::Change;
use super::{ClientRecord, CodeRecord, ConsentRecord, Record, StoreError, TokenRecord, UserRecord};

/// One store: the source of every other handle.
pub trait Backend: Send + Sync + 'static {
    /// The `shards` partition logs. A store last laid out for another count first moves each
    /// entry to the partition its digest now selects, losing none.
    fn partitions(&self, shards: usize) -> Result<Vec<Box<dyn PartitionLog>>, StoreError>;
    /// The change log's storage.
    fn changes(&self) -> Result<Box<dyn ChangeStorage>, StoreError>;
    fn clients(&self) -> Result<Box<dyn ClientStorage>, StoreError>;
    fn users(&self) -> Result<Box<dyn UserStorage>, StoreError>;
    /// Makes every write applied before the call durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Token records held across all partitions, expired or not: for tests and tools that check
    /// what the sweeper left.
    fn stored_tokens(&self) -> Result<usize, StoreError>;
}

/// Where an entry of a partition is kept: its expiry and an id unique in the store, never
/// reused, even across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryKey {
    pub exp: u64,
    pub id: u64,
}

/// An entry to write into a partition. Each is named by a digest: a token's, a code's, or for
/// a revoked family the digest of the code the family began with.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Token(&'a TokenRecord),
    Code(&'a CodeRecord),
    /// A revoked family, refused until `until` (when its last refresh token would expire).
    RevokedFamily {
        until: u64,
    },
}

impl Entry<'_> {
    pub fn exp(&self) -> u64 {
        match self {
            Entry::Token(r) => r.exp,
            Entry::Code(r) => r.exp,
            Entry::RevokedFamily { until } => *until,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Entry::Token(_) => Kind::Token,
            Entry::Code(_) => Kind::Code,
            Entry::RevokedFamily { .. } => Kind::RevokedFamily,
        }
    }

    /// Appends the record's encoding (postcard; nothing for a revoked family) to `buf`.
    pub fn encode_into(&self, buf: Vec<u8>) -> Vec<u8> {
        match self {
            Entry::Token(r) => r.encode_into(buf),
            Entry::Code(r) => r.encode_into(buf),
            Entry::RevokedFamily { .. } => buf,
        }
    }
}

/// An entry read back.
#[derive(Debug, Clone)]
pub enum Loaded {
    Token(TokenRecord),
    Code(CodeRecord),
    RevokedFamily,
}

impl Loaded {
    /// The entry of kind `kind` whose record is encoded in `record`.
    pub fn decode(kind: Kind, record: &[u8]) -> Result<Loaded, StoreError> {
        Ok(match kind {
            Kind::Token => Loaded::Token(TokenRecord::decode(record)?),
            Kind::Code => Loaded::Code(CodeRecord::decode(record)?),
            Kind::RevokedFamily => Loaded::RevokedFamily,
        })
    }
}

/// The kinds of entry. Every backend stores a kind as its [`code`](Kind::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    Code,
    RevokedFamily,
}

impl Kind {
    pub const fn code(self) -> u8 {
        match self {
            Kind::Token => b't',
            Kind::Code => b'c',
            Kind::RevokedFamily => b'f',
        }
    }

    /// `None` for a byte that is no kind's code.
    pub fn from_code(code: u8) -> Option<Kind> {
        [Kind::Token, Kind::Code, Kind::RevokedFamily]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// An entry a sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub id: u64,
    pub kind: Kind,
    pub digest: TokenDigest,
}

/// One partition's entries (tokens, codes, revoked families), each under its [`EntryKey`].
/// Owned by one partition, which is the only writer.
pub trait PartitionLog: Send {
    /// Calls `visit` with every entry that expires after `now`, in any order.
    fn load(
        &self,
        now: u64,
        visit: &mut dyn FnMut(EntryKey, TokenDigest, Loaded) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Writes a new entry and returns its key.
    fn put(&mut self, digest: &TokenDigest, entry: Entry<'_>) -> Result<EntryKey, StoreError>;
    /// Writes `entry` over the one at `key` (same digest, same expiry).
    fn replace(&mut self, key: EntryKey, digest: &TokenDigest, entry: Entry<'_>) -> Result<(), StoreError>;
    /// Removes the entry at `key`, if it is there.
    fn delete(&mut self, key: EntryKey) -> Result<(), StoreError>;
    /// Removes up to `limit` entries that expire at or before `now`, and says which. Its cost
    /// follows the number of expired entries, not the partition's size.
    fn sweep(&mut self, now: u64, limit: usize) -> Result<Vec<Swept>, StoreError>;
    /// A read that fails if the storage cannot serve reads, for readiness.
    fn probe(&self) -> Result<(), StoreError>;
}

/// The change log's entries by sequence number, with an expiry index, and the log's two
/// bounds. The log ([`super::ChangeLog`]) holds the lock that orders appends; the storage only
/// keeps what it is given.
pub trait ChangeStorage: Send + Sync {
    /// A number above every number this storage has handed out before, across restarts.
    fn next_seq(&self) -> Result<u64, StoreError>;
    fn put(&self, seq: u64, change: &Change) -> Result<(), StoreError>;
    /// Removes the change `seq` (which expires at `until`); returns whether it was there.
    fn remove(&self, seq: u64, until: u64) -> Result<bool, StoreError>;
    /// Up to `limit` changes numbered above `after` and at most `upto`, in order.
    fn range(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, Change)>, StoreError>;
    /// Up to `limit` `(seq, until)` of changes whose `until` is at or before `now`.
    fn expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError>;
    /// The highest number held, 0 if none.
    fn last(&self) -> Result<u64, StoreError>;
    /// Changes held. May read them all: called once, at open.
    fn count(&self) -> Result<u64, StoreError>;
    fn bounds(&self) -> Result<LogBounds, StoreError>;
    fn set_bounds(&self, bounds: LogBounds) -> Result<(), StoreError>;
}

/// What the change log remembers of what it pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The highest number pruned before its tokens expired: a reader behind it must start
    /// afresh.
    pub floor: u64,
    /// The highest number pruned for any reason: the head never falls below it.
    pub pruned: u64,
}

/// Registered clients. Each write is durable when it returns.
pub trait ClientStorage: Send + Sync {
    fn load(&self) -> Result<Vec<ClientRecord>, StoreError>;
    fn put(&self, record: &ClientRecord) -> Result<(), StoreError>;
    /// Returns whether it was there.
    fn remove(&self, client_id: &str) -> Result<bool, StoreError>;
}

/// Users and the consents they gave. Each write is durable when it returns.
pub trait UserStorage: Send + Sync {
    fn get(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    fn put(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Removes the user and every consent they gave; returns whether the user was there.
    fn remove(&self, username: &str) -> Result<bool, StoreError>;
    /// Every user, ordered by username.
    fn list(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn consent(&self, username: &str, client_id: &str) -> Result<Option<ConsentRecord>, StoreError>;
    fn put_consent(&self, username: &str, client_id: &str, consent: &ConsentRecord) -> Result<(), StoreError>;
    /// The consents `username` gave, by client id.
    fn consents_of(&self, username: &str) -> Result<Vec<(String, ConsentRecord)>, StoreError>;
    /// Forgets every consent given to `client_id`; returns how many.
    fn forget_client(&self, client_id: &str) -> Result<usize, StoreError>;
}
