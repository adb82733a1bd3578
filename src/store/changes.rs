//! The change log: every revocation, in order, so that resource servers that cache
//! introspection answers can be told to drop them (the revocation feed).
//!
//! # Guarantees
//! - **An acknowledged revocation is in the log.** The partition appends the change before it
//!   removes the records the change names, both in the same backend, and the revocation is
//!   acknowledged only after group commit flushed both. A backend keeps writes in order across
//!   a crash ([`super::backend`]), so a crash may lose a removal together with its change, or
//!   keep the change and lose the removal (a subscriber then drops an entry it could have
//!   kept), but never keep the removal without its change.
//! - **Sequence numbers only grow**, across restarts and crashes, and across the nodes of a
//!   shared database ([`ChangeStorage::append`]); they are not contiguous.
//! - **A reader never skips a change.** Readers read up to the storage's head, and the storage
//!   moves the head only once every change at or below it is readable (sled as it appends;
//!   PostgreSQL once the change committed, since it numbers changes at commit).
//! - **Pruned only when harmless**: a change is removed once every token it names has expired
//!   (a cache never holds an answer past `exp`), or, beyond `capacity` changes, the oldest go
//!   first and the floor rises: a reader behind the floor is told to start afresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backend::{ChangeStorage, LogBounds};
use super::{Record, StoreError};
use crate::crypto::TokenDigest;

/// What a change revoked. Tokens and families are named by their digests, as the partitions
/// store them; whoever shows a change to the outside derives public names from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revoked {
    /// One token (RFC 7009 revocation).
    Token(TokenDigest),
    /// Every token of a grant.
    Family(TokenDigest),
    /// Every token issued on behalf of the user `sub`.
    Subject(String),
    /// Every token of a client.
    Client(String),
}

/// Which resource servers a change concerns: those that could have been shown its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reach {
    /// Some token had no audience, so every resource server may hold it.
    Everyone,
    /// Every token had an audience: these resource indicators, each once.
    Resources(Vec<String>),
}

impl Reach {
    /// The reach of revoking tokens with these audiences (each a space-separated list, as
    /// tokens store it; `None` for a token without one).
    pub fn of<'a>(audiences: impl IntoIterator<Item = Option<&'a str>>) -> Reach {
        let mut resources: Vec<String> = Vec::new();
        for aud in audiences {
            let Some(aud) = aud else {
                return Reach::Everyone;
            };
            for r in aud.split(' ') {
                if !resources.iter().any(|known| known == r) {
                    resources.push(r.to_owned());
                }
            }
        }
        Reach::Resources(resources)
    }

    /// Whether a resource server with the resource indicator `resource` may see the change:
    /// the same rule as introspection's (a token with an audience is shown only to its
    /// audience).
    pub fn reaches(&self, resource: Option<&str>) -> bool {
        match (self, resource) {
            (Reach::Everyone, _) => true,
            (Reach::Resources(list), Some(r)) => list.iter().any(|known| known == r),
            (Reach::Resources(_), None) => false,
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub revoked: Revoked,
    /// When it happened, seconds since the Unix epoch: every token it names was issued at or
    /// before.
    pub at: u64,
    /// When the last token it names would have expired; the change is pruned after.
    pub until: u64,
    pub reach: Reach,
}

impl Record for Change {}

/// What a read of the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The position was older than the floor, or above the head (another log's number): the
    /// reader must start afresh, at `next`. `changes` is then empty.
    pub reset: bool,
    pub changes: Vec<(u64, Change)>,
    /// Where the next read starts: the last number returned, or the head.
    pub next: u64,
    /// More changes wait after `next`.
    pub more: bool,
}

/// The log of one store; shared by every partition.
pub struct ChangeLog {
    storage: Box<dyn ChangeStorage>,
    /// Held while a change is appended, and while pruning.
    write: Mutex<Bounds>,
    head: watch::Receiver<u64>,
    capacity: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    kept: LogBounds,
    /// Changes held: counted once at open, then kept here (a count may read the whole log).
    count: u64,
}

/// How many changes a read may pass over per change it may return.
pub const SCAN_PER_RESULT: usize = 16;

impl ChangeLog {
    /// Opens the log kept by `storage`, keeping at most `capacity` changes.
    pub(super) fn open(storage: Box<dyn ChangeStorage>, capacity: u64) -> Result<ChangeLog, StoreError> {
        let capacity = AtomicU64::new(capacity.max(1));
        let bounds = Bounds {
            kept: storage.bounds()?,
            count: storage.count()?,
        };
        let head = storage.head();
        Ok(ChangeLog {
            storage,
            write: Mutex::new(bounds),
            head,
            capacity,
        })
    }

    /// Appends `change`. Not durable until group commit flushes.
    pub fn append(&self, change: &Change) -> Result<(), StoreError> {
        let mut bounds = self.write.lock().unwrap_or_else(|p| p.into_inner());
        self.storage.append(change)?;
        bounds.count += 1;
        let over = bounds.count.saturating_sub(self.capacity.load(Ordering::Relaxed));
        if over > 0 {
            self.drop_oldest(&mut bounds, over)?;
        }
        Ok(())
    }

    /// Removes the `count` oldest changes, whose tokens may not have expired: readers behind
    /// them must start afresh.
    fn drop_oldest(&self, bounds: &mut Bounds, count: u64) -> Result<(), StoreError> {
        for (seq, change) in self.storage.range(0, u64::MAX, count as usize)? {
            if self.storage.remove(seq, change.until)? {
                bounds.count = bounds.count.saturating_sub(1);
            }
            bounds.kept.floor = bounds.kept.floor.max(seq);
            bounds.kept.pruned = bounds.kept.pruned.max(seq);
        }
        self.storage.set_bounds(bounds.kept)
    }

    /// Keeps at most `capacity` changes from the next append on (`feed_log_max_events`).
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// The number up to which changes are readable.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that sees the head move, for readers that wait for changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// Up to `max` changes after `after` that `keep` accepts, read up to the published head.
    /// Changes `keep` refuses are passed over (the position still moves past them); one read
    /// looks at no more than [`SCAN_PER_RESULT`] changes per result asked for.
    pub fn read(&self, after: u64, max: usize, keep: impl Fn(&Change) -> bool) -> Result<Read, StoreError> {
        let head = self.head();
        let floor = self.write.lock().unwrap_or_else(|p| p.into_inner()).kept.floor;
        if after > head || after < floor {
            return Ok(Read {
                reset: true,
                changes: Vec::new(),
                next: head,
                more: false,
            });
        }
        let mut changes = Vec::new();
        let mut next = head;
        let mut more = false;
        if after < head {
            let scan = max.saturating_mul(SCAN_PER_RESULT);
            // One more than may be looked at: its presence says more wait.
            for (scanned, (seq, change)) in self
                .storage
                .range(after, head, scan.saturating_add(1))?
                .into_iter()
                .enumerate()
            {
                if changes.len() == max || scanned == scan {
                    more = true;
                    break;
                }
                next = seq;
                if keep(&change) {
                    changes.push((seq, change));
                }
            }
        }
        Ok(Read {
            reset: false,
            changes,
            next,
            more,
        })
    }

    /// Removes up to `limit` changes whose tokens have all expired at `now`; returns how many.
    /// Reads only the expired prefix of the expiry index.
    pub fn prune(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let mut bounds = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let expired = self.storage.expired(now, limit)?;
        for &(seq, until) in &expired {
            if self.storage.remove(seq, until)? {
                bounds.count = bounds.count.saturating_sub(1);
            }
            bounds.kept.pruned = bounds.kept.pruned.max(seq);
        }
        if !expired.is_empty() {
            self.storage.set_bounds(bounds.kept)?;
        }
        Ok(expired.len())
    }

    /// Changes held.
    pub fn len(&self) -> usize {
        self.write.lock().unwrap_or_else(|p| p.into_inner()).count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Backend;
    use crate::store::sled_store::SledBackend;

    fn change(n: u8, until: u64, reach: Reach) -> Change {
        Change {
            revoked: Revoked::Token(TokenDigest([n; 32])),
            at: 10,
            until,
            reach,
        }
    }

    fn log(capacity: u64) -> (SledBackend, ChangeLog) {
        let db = SledBackend::temporary().unwrap();
        let log = ChangeLog::open(db.changes().unwrap(), capacity).unwrap();
        (db, log)
    }

    /// Appends `change` and returns its number: on sled, the head moves with each append.
    fn add(log: &ChangeLog, change: &Change) -> u64 {
        log.append(change).unwrap();
        log.head()
    }

    #[test]
    fn reads_resume_after_a_position_and_replay_exactly_what_follows() {
        let (_db, log) = log(100);
        let seqs: Vec<u64> = (0..10).map(|n| add(&log, &change(n, 1000, Reach::Everyone))).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "numbers grow: {seqs:?}");
        assert_eq!(log.head(), seqs[9]);
        let all = log.read(0, 100, |_| true).unwrap();
        assert_eq!(all.changes.iter().map(|c| c.0).collect::<Vec<_>>(), seqs);
        let rest = log.read(seqs[3], 100, |_| true).unwrap();
        assert_eq!(rest.changes.iter().map(|c| c.0).collect::<Vec<_>>(), seqs[4..]);
        assert_eq!((rest.next, rest.more, rest.reset), (seqs[9], false, false));
        let page = log.read(seqs[3], 2, |_| true).unwrap();
        assert_eq!(page.changes.iter().map(|c| c.0).collect::<Vec<_>>(), seqs[4..6]);
        assert_eq!((page.next, page.more), (seqs[5], true));
        let none = log.read(seqs[9], 100, |_| true).unwrap();
        assert!(none.changes.is_empty() && !none.more && !none.reset);
        assert_eq!(none.next, seqs[9]);
    }

    #[test]
    fn a_filter_passes_changes_over_without_stalling_the_position() {
        let (_db, log) = log(100);
        let a = add(&log, &change(1, 1000, Reach::Resources(vec!["https://a".into()])));
        let b = add(&log, &change(2, 1000, Reach::Resources(vec!["https://b".into()])));
        let read = log.read(0, 100, |c| c.reach.reaches(Some("https://b"))).unwrap();
        assert_eq!(read.changes.len(), 1);
        assert_eq!(read.changes[0].0, b);
        assert!(a < b);
        assert_eq!(read.next, b, "the position moved past the change the filter refused");
    }

    #[test]
    fn a_position_above_the_head_or_below_the_floor_is_a_reset() {
        let (_db, log) = log(3);
        let seqs: Vec<u64> = (0..5).map(|n| add(&log, &change(n, 1000, Reach::Everyone))).collect();
        assert_eq!(log.len(), 3, "capacity holds");
        assert_eq!(
            log.storage.count().unwrap(),
            3,
            "the count kept in memory is the stored one"
        );
        let behind = log.read(seqs[0], 100, |_| true).unwrap();
        assert!(behind.reset, "the change after seqs[0] was dropped unexpired");
        assert_eq!(behind.next, seqs[4]);
        let at_floor = log.read(seqs[1], 100, |_| true).unwrap();
        assert!(!at_floor.reset, "everything after the floor is still here");
        assert_eq!(at_floor.changes.len(), 3);
        assert!(
            log.read(seqs[4] + 1, 100, |_| true).unwrap().reset,
            "another log's number"
        );
    }

    #[test]
    fn pruning_takes_only_expired_changes_and_keeps_positions_valid() {
        let (db, log) = log(100);
        let early = add(&log, &change(1, 50, Reach::Everyone));
        let late = add(&log, &change(2, 500, Reach::Everyone));
        let never = add(&log, &change(3, u64::MAX, Reach::Everyone));
        assert_eq!(log.prune(49, 10).unwrap(), 0, "nothing expired yet");
        assert_eq!(log.prune(50, 10).unwrap(), 1);
        let read = log.read(0, 100, |_| true).unwrap();
        assert!(!read.reset, "an expired change is no loss: no cache holds its tokens");
        assert_eq!(read.changes.iter().map(|c| c.0).collect::<Vec<_>>(), [late, never]);
        assert_eq!(log.prune(u64::MAX - 1, 10).unwrap(), 1);
        drop(log);
        let again = ChangeLog::open(db.changes().unwrap(), 100).unwrap();
        assert_eq!(again.head(), never, "the head survives a reopen");
        assert_eq!(again.read(early, 100, |_| true).unwrap().changes.len(), 1);
        assert!(!again.read(late, 100, |_| true).unwrap().reset);
    }

    #[test]
    fn the_head_survives_pruning_everything() {
        let (db, log) = log(100);
        let seq = add(&log, &change(1, 50, Reach::Everyone));
        log.prune(60, 10).unwrap();
        assert!(log.is_empty());
        drop(log);
        let again = ChangeLog::open(db.changes().unwrap(), 100).unwrap();
        assert_eq!(again.head(), seq);
        assert!(
            !again.read(seq, 10, |_| true).unwrap().reset,
            "a subscriber at the head resumes"
        );
    }

    #[test]
    fn reach_follows_the_audiences_of_the_tokens() {
        assert_eq!(Reach::of([Some("https://a"), None]), Reach::Everyone);
        let r = Reach::of([Some("https://a https://b"), Some("https://b")]);
        assert_eq!(r, Reach::Resources(vec!["https://a".into(), "https://b".into()]));
        assert!(r.reaches(Some("https://b")));
        assert!(!r.reaches(Some("https://c")));
        assert!(
            !r.reaches(None),
            "a resource server without an indicator sees no audience"
        );
        assert!(Reach::Everyone.reaches(None));
    }
}
