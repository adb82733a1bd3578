//! The revocations received in the last few seconds, so that an introspection answer computed by
//! Tessera just before a revocation, and arriving here just after its event, is not cached as
//! active.
//!
//! Guarantees:
//! - a revocation is kept for the configured time (twice the upstream timeout: no answer to a
//!   call started before the revocation can arrive later than that), then forgotten;
//! - at most [`CAPACITY`] revocations are kept; past it the oldest go first, with a warning,
//!   since an answer racing one of them is then no longer caught;
//! - [`Recent::revokes`] says an answer is revoked when its `jti` or `grant_id` was revoked, or
//!   its `sub` or `client_id` was revoked at or after the token's `iat` (a token issued later
//!   is not concerned; one without `iat` is taken as revoked: it cannot show it came later).
//!
//! Written for each event, read on a cache miss only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::index::Kind;
use crate::introspect::TokenInfo;

/// Most revocations kept at once.
pub const CAPACITY: usize = 10_000;

struct Seen {
    /// The latest `event_timestamp` among the events for this identifier.
    event_timestamp: u64,
    /// Forgotten at this instant, unless a later event pushed it back.
    until: Instant,
}

#[derive(Default)]
struct Kept {
    by_kind: [HashMap<Box<str>, Seen>; 4],
    /// Identifiers in the order they expire; an identifier recorded twice is in it twice.
    order: VecDeque<(Kind, Box<str>, Instant)>,
    overflowed: bool,
}

pub struct Recent {
    keep: Duration,
    capacity: usize,
    kept: Mutex<Kept>,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Jti => 0,
        Kind::Grant => 1,
        Kind::Sub => 2,
        Kind::Client => 3,
    }
}

impl Recent {
    pub fn new(keep: Duration) -> Recent {
        Recent::with_capacity(keep, CAPACITY)
    }

    pub fn with_capacity(keep: Duration, capacity: usize) -> Recent {
        Recent {
            keep,
            capacity: capacity.max(1),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Records that `id` (a `kind`) was revoked at `event_timestamp`, received at `now`.
    pub fn record(&self, kind: Kind, id: &str, event_timestamp: u64, now: Instant) {
        let mut kept = self.lock();
        kept.prune(now);
        while kept.order.len() >= self.capacity {
            if !kept.overflowed {
                kept.overflowed = true;
                tracing::warn!(
                    capacity = self.capacity,
                    "more recent revocations than kept: the oldest are forgotten early"
                );
            }
            kept.pop_oldest();
        }
        let until = now + self.keep;
        let map = &mut kept.by_kind[slot(kind)];
        match map.get_mut(id) {
            Some(seen) => {
                seen.event_timestamp = seen.event_timestamp.max(event_timestamp);
                seen.until = until;
            }
            None => {
                map.insert(id.into(), Seen { event_timestamp, until });
            }
        }
        kept.order.push_back((kind, id.into(), until));
    }

    /// Whether an answer received at `now` is about a token revoked by a recent event.
    pub fn revokes(&self, info: &TokenInfo, now: Instant) -> bool {
        let mut kept = self.lock();
        kept.prune(now);
        if kept.order.is_empty() {
            return false;
        }
        let named = |kind: Kind, id: Option<&str>| id.and_then(|id| kept.by_kind[slot(kind)].get(id));
        if named(Kind::Jti, info.jti.as_deref()).is_some() || named(Kind::Grant, info.grant_id.as_deref()).is_some() {
            return true;
        }
        let issued_before = |seen: &Seen| info.iat.is_none_or(|iat| iat <= seen.event_timestamp);
        named(Kind::Sub, info.sub.as_deref()).is_some_and(issued_before)
            || named(Kind::Client, Some(&info.client_id)).is_some_and(issued_before)
    }

    /// How many revocations are kept (each identifier once).
    pub fn len(&self) -> usize {
        self.lock().by_kind.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Every write leaves the maps whole; a poisoned lock still holds valid ones.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kept {
    fn prune(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, _, until)| *until <= now) {
            self.pop_oldest();
        }
        if self.order.is_empty() {
            self.overflowed = false;
        }
    }

    fn pop_oldest(&mut self) {
        let Some((kind, id, until)) = self.order.pop_front() else {
            return;
        };
        let map = &mut self.by_kind[slot(kind)];
        // Only the last record of an identifier removes it.
        if map.get(&*id).is_some_and(|seen| seen.until == until) {
            map.remove(&*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::index::tests::info;

    const KEEP: Duration = Duration::from_secs(4);
    const TS: u64 = 1_764_600_000;

    fn issued_at(mut i: TokenInfo, iat: Option<u64>) -> TokenInfo {
        i.iat = iat;
        i
    }

    #[test]
    fn a_jti_or_grant_match_is_revoked_whatever_the_iat() {
        let t = Instant::now();
        let r = Recent::new(KEEP);
        r.record(Kind::Jti, "j-a", TS, t);
        r.record(Kind::Grant, "g-1", TS, t);
        let later = Some(TS + 100);
        assert!(r.revokes(&issued_at(info("j-a", None, None, "c"), later), t));
        assert!(r.revokes(&issued_at(info("j-x", Some("g-1"), None, "c"), later), t));
        assert!(
            !r.revokes(&info("j-x", Some("g-2"), Some("j-a"), "g-1"), t),
            "kinds do not mix"
        );
    }

    #[test]
    fn a_sub_or_client_match_is_revoked_only_for_tokens_issued_at_or_before_the_event() {
        let t = Instant::now();
        let r = Recent::new(KEEP);
        r.record(Kind::Sub, "u-1", TS, t);
        r.record(Kind::Client, "c-1", TS, t);
        for (who, sub, client) in [("sub", Some("u-1"), "c-x"), ("client", None, "c-1")] {
            let token = info("j", None, sub, client);
            assert!(
                r.revokes(&issued_at(token.clone(), Some(TS - 5)), t),
                "{who}: issued before"
            );
            assert!(r.revokes(&issued_at(token.clone(), Some(TS)), t), "{who}: issued at");
            assert!(
                !r.revokes(&issued_at(token.clone(), Some(TS + 1)), t),
                "{who}: issued after"
            );
            assert!(r.revokes(&issued_at(token, None), t), "{who}: no iat");
        }
        assert!(!r.revokes(&info("j", None, Some("u-2"), "c-2"), t));
    }

    #[test]
    fn repeated_events_keep_the_latest_timestamp_and_time() {
        let t = Instant::now();
        let r = Recent::new(KEEP);
        r.record(Kind::Sub, "u-1", TS, t);
        r.record(Kind::Sub, "u-1", TS + 10, t + Duration::from_secs(2));
        let token = issued_at(info("j", None, Some("u-1"), "c"), Some(TS + 5));
        assert!(
            r.revokes(&token, t + Duration::from_secs(5)),
            "the second event still holds"
        );
        assert_eq!(r.len(), 1);
        assert!(!r.revokes(&token, t + Duration::from_secs(7)));
        assert!(r.is_empty());
    }

    #[test]
    fn revocations_are_forgotten_after_the_keep_time() {
        let t = Instant::now();
        let r = Recent::new(KEEP);
        r.record(Kind::Jti, "j-a", TS, t);
        let token = info("j-a", None, None, "c");
        assert!(r.revokes(&token, t + KEEP - Duration::from_millis(1)));
        assert!(!r.revokes(&token, t + KEEP));
        assert!(r.is_empty());
    }

    #[test]
    fn the_size_is_bounded_and_the_oldest_go_first() {
        let t = Instant::now();
        let r = Recent::with_capacity(KEEP, 3);
        for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            r.record(Kind::Jti, id, TS, t + Duration::from_millis(n as u64));
        }
        assert_eq!(r.len(), 3);
        let now = t + Duration::from_millis(10);
        assert!(!r.revokes(&info("a", None, None, "c"), now));
        assert!(["b", "c", "d"]
            .iter()
            .all(|id| r.revokes(&info(id, None, None, "x"), now)));
    }
}
