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
//!   fetch from a shared database). The change log is read up to its head, which tells how
//!   far that holds ([`ChangeStorage::head`]).
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
//! sled ([`super::sled_store`]) is the embedded backend; PostgreSQL ([`super::pg`]) may be
//! shared by several nodes, and offers them [`SharedDatabase`] too.

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::crypto::TokenDigest;

use super::changes::Change;
use super::changes::Revoked;
use super::{ClientRecord, CodeRecord, ConsentRecord, Record, Redeem, StoreError, TokenRecord, TokenType, UserRecord};

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
    /// What the backend offers nodes that share it, if several may; `None` for a store that
    /// one process owns (sled).
    fn shared(&self) -> Option<std::sync::Arc<dyn SharedDatabase>> {
        None
    }
}

/// A token record read from a shared database, with where it is kept.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub digest: TokenDigest,
    pub key: EntryKey,
    pub record: TokenRecord,
}

/// What [`SharedDatabase::revoke_stored`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRevocation {
    pub tokens: usize,
    pub codes: usize,
    /// The grants of the tokens, and of the redeemed codes, removed.
    pub families: Vec<TokenDigest>,
}

/// A change read from a shared database, with the node that made it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: u64,
    pub origin: u64,
    pub change: Change,
}

/// What a database shared by several nodes offers beyond the contract: the reads and the
/// atomic updates through which nodes that each answer from their own memory stay one truth.
///
/// The futures run on the backend's own runtime and may be awaited from any executor.
/// Each call commits before its future resolves.
pub trait SharedDatabase: Send + Sync {
    /// This node's name among the nodes, as its changes carry it ([`Committed::origin`]).
    fn node(&self) -> u64;
    /// The tokens among `digests` that are stored, unexpired at `now` and not in a revoked
    /// family, used ones marked used. Sees this node's writes that are not committed yet.
    fn fetch(&self, digests: Vec<TokenDigest>, now: u64) -> BoxFuture<'static, Result<Vec<Fetched>, StoreError>>;
    /// Redeems the code `digest` of `client_id` at `now`, once across every node.
    fn redeem_code(
        &self,
        digest: TokenDigest,
        client_id: String,
        now: u64,
    ) -> BoxFuture<'static, Result<Redeem, StoreError>>;
    /// Marks the refresh token `digest` used; `false` if it was used before, by any node, or is
    /// gone.
    fn spend_refresh(&self, digest: TokenDigest) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Up to `limit` committed changes numbered above `after`, in order.
    fn changes_after(&self, after: u64, limit: usize) -> BoxFuture<'static, Result<Vec<Committed>, StoreError>>;
    /// Removes, in one transaction with the change that announces it, every stored token and
    /// code that `revoked` (a family, a user, a client) names, whichever node issued it. Only
    /// committed writes are seen: a caller awaits its own first. The change lives until
    /// `until` at least, or until the last removed token would have expired. A user's or a
    /// client's change is made only if something was removed; a family's always is, since
    /// another node may still be issuing into it from memory.
    fn revoke_stored(
        &self,
        revoked: Revoked,
        until: u64,
        now: u64,
    ) -> BoxFuture<'static, Result<StoredRevocation, StoreError>>;
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

    /// Whether the entry was used: a redeemed code, an exchanged refresh token.
    pub fn used(&self) -> bool {
        match self {
            Entry::Token(r) => r.claims.token_type == TokenType::UsedRefresh,
            Entry::Code(r) => r.redeemed,
            Entry::RevokedFamily { .. } => false,
        }
    }

    /// Whose the entry is: the family (grant) of a token, and the user and client of a token
    /// or a code. A backend shared by several nodes keeps them as columns, so that a node
    /// revokes what other nodes issued ([`SharedDatabase::revoke_stored`]).
    pub fn holders(&self) -> Holders<'_> {
        match self {
            Entry::Token(r) => Holders {
                family: r.claims.family.as_ref(),
                sub: r.claims.sub.as_deref(),
                client_id: Some(&r.claims.client_id),
            },
            Entry::Code(r) => Holders {
                family: None,
                sub: Some(&r.sub),
                client_id: Some(&r.client_id),
            },
            Entry::RevokedFamily { .. } => Holders::default(),
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

/// See [`Entry::holders`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Holders<'a> {
    pub family: Option<&'a TokenDigest>,
    pub sub: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// An entry read back.
#[derive(Debug, Clone)]
pub enum Loaded {
    Token(TokenRecord),
    Code(CodeRecord),
    RevokedFamily,
}

impl Loaded {
    /// The entry to write for this one, which was kept under a key expiring at `exp` (a revoked
    /// family's expiry is its key's): what a copy to another store writes.
    pub fn as_entry(&self, exp: u64) -> Entry<'_> {
        match self {
            Loaded::Token(record) => Entry::Token(record),
            Loaded::Code(record) => Entry::Code(record),
            Loaded::RevokedFamily => Entry::RevokedFamily { until: exp },
        }
    }

    /// The entry of kind `kind` whose record is encoded in `record`.
    pub fn decode(kind: Kind, record: &[u8]) -> Result<Loaded, StoreError> {
        Ok(match kind {
            Kind::Token => Loaded::Token(TokenRecord::decode(record)?),
            Kind::Code => Loaded::Code(CodeRecord::decode(record)?),
            Kind::RevokedFamily => Loaded::RevokedFamily,
        })
    }

    /// The entry marked used, as a shared database records it apart from the record: another
    /// node's atomic redemption or rotation sets the mark without rewriting the record.
    pub fn marked_used(self) -> Loaded {
        match self {
            Loaded::Token(mut r) if r.claims.token_type == TokenType::Refresh => {
                let mut claims = (*r.claims).clone();
                claims.token_type = TokenType::UsedRefresh;
                r.claims = std::sync::Arc::new(claims);
                Loaded::Token(r)
            }
            Loaded::Code(r) => Loaded::Code(CodeRecord { redeemed: true, ..r }),
            other => other,
        }
    }
}

/// The kinds of entry. Every backend stores a kind as its [`code`](Kind::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
/// bounds. The log ([`super::ChangeLog`]) calls [`append`](Self::append) under the lock that
/// orders appends; the storage numbers the changes and says how far they are readable.
pub trait ChangeStorage: Send + Sync {
    /// Writes `change` under a number above every number handed out before, across restarts
    /// (and, in a database shared by several nodes, above every number any node committed
    /// before). The number is never 0, which stands for "before every change".
    fn append(&self, change: &Change) -> Result<(), StoreError>;
    /// The head: the highest number a reader may read up to, knowing that every change
    /// numbered at or below it is already readable. sled moves it at each append; a database
    /// that numbers changes when it commits them moves it after the commit.
    fn head(&self) -> watch::Receiver<u64>;
    /// Removes the change `seq` (which expires at `until`); returns whether it was there.
    fn remove(&self, seq: u64, until: u64) -> Result<bool, StoreError>;
    /// Up to `limit` changes numbered above `after` and at most `upto`, in order.
    fn range(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<(u64, Change)>, StoreError>;
    /// Up to `limit` `(seq, until)` of changes whose `until` is at or before `now`.
    fn expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError>;
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
