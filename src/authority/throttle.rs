//! Throttling of failed sign-ins, per username and per client address.
//!
//! After a few free failures each further one is answered after a growing delay, and after
//! `lockout_after` failures the username (or address) is locked for `lockout_secs`. Usernames
//! are throttled whether or not they exist, with the same counters and messages, so the
//! throttle says nothing about which names are real. An address gets `ADDRESS_FACTOR` times the
//! allowance of a username, since several people may share one address. Counts live in memory:
//! a restart forgives, which costs an attacker a restart they cannot cause.
//!
//! A sign-in *reserves* a failure before its password is checked ([`Throttle::reserve`]): the
//! check and the count are one step under the entry's lock, so concurrent attempts for one name
//! draw on the same allowance and at most `lockout_after` of them are ever admitted in a
//! window, however many arrive at once. The reservation is then settled: a failure keeps it
//! ([`Throttle::failed`]), a success clears the username ([`Throttle::succeeded`]), and a check
//! that never ran gives it back ([`Throttle::give_back`]). A reservation that is dropped
//! unsettled (the request went away) stays counted as a failure.
//!
//! Time is a value (`now`, seconds), so the rules are tested without waiting.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;

/// An address may fail this many times more often than one username.
const ADDRESS_FACTOR: u32 = 5;
/// Bound on the entries of each map: past it, entries without a recent failure are dropped.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures answered without delay.
    pub free_failures: u32,
    /// Failures after which the username is locked.
    pub lockout_after: u32,
    pub lockout_secs: u64,
    /// A failure older than this no longer counts.
    pub window_secs: u64,
    /// Delay after the first failure past the free ones; doubles with each further failure.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures: 3,
            lockout_after: 10,
            lockout_secs: 15 * 60,
            window_secs: 15 * 60,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// The answer to [`Throttle::reserve`].
#[derive(Debug)]
pub enum Admission {
    /// Go ahead and check the password; settle the reservation with its result.
    Admitted(Reservation),
    /// Refuse without checking the password, for this many more seconds.
    Locked { retry_after: u64 },
}

/// A failure counted in advance for one sign-in attempt, until it is settled.
#[must_use = "a reservation is settled with failed, succeeded or give_back"]
#[derive(Debug)]
pub struct Reservation {
    user: String,
    user_generation: u32,
    addr: Option<(IpAddr, u32)>,
    /// The username's failures in the window, this one included: it sets the delay.
    count: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    /// Failures in the current window, reservations not yet settled included.
    count: u32,
    last: u64,
    locked_until: u64,
    /// Changes whenever the count starts afresh, so that giving back a reservation of an
    /// earlier window changes nothing.
    generation: u32,
}

impl Failures {
    /// Starts the count afresh when the window has passed or the lock has ended.
    fn refresh(&mut self, now: u64, window_secs: u64) {
        let lock_ended = self.locked_until != 0 && self.locked_until <= now;
        if lock_ended || (self.count > 0 && now.saturating_sub(self.last) > window_secs) {
            self.count = 0;
            self.locked_until = 0;
            self.generation = self.generation.wrapping_add(1);
        }
    }

    fn count_one(&mut self, now: u64, limit: u32, lockout_secs: u64) {
        self.count += 1;
        self.last = now;
        if self.count >= limit {
            self.locked_until = now + lockout_secs;
        }
    }

    /// Takes a reservation of this window back; a lock it completed is lifted with it (no
    /// reservation is admitted while a lock stands, so the lock of this window came from
    /// reaching the limit).
    fn give_back(&mut self, generation: u32, limit: u32) {
        if self.generation == generation && self.count > 0 {
            self.count -= 1;
            if self.count < limit {
                self.locked_until = 0;
            }
        }
    }
}

pub struct Throttle {
    policy: ThrottlePolicy,
    users: DashMap<String, Failures, ahash::RandomState>,
    addrs: DashMap<IpAddr, Failures, ahash::RandomState>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy,
            users: DashMap::default(),
            addrs: DashMap::default(),
        }
    }

    /// Usernames are compared without case, so `Alice` and `alice` share a counter.
    fn user_key(username: &str) -> String {
        username.to_lowercase()
    }

    fn addr_limit(&self) -> u32 {
        self.policy.lockout_after.saturating_mul(ADDRESS_FACTOR)
    }

    /// Admits a sign-in as `username` from `addr` at `now` and counts it as a failure at once,
    /// or refuses it while the username or the address is locked (counting nothing).
    pub fn reserve(&self, username: &str, addr: Option<IpAddr>, now: u64) -> Admission {
        let p = self.policy;
        // Pruned before any entry is held: `retain` locks every shard of the map.
        if self.users.len() >= MAX_ENTRIES {
            self.users
                .retain(|_, f| now.saturating_sub(f.last) <= p.window_secs || f.locked_until > now);
        }
        if addr.is_some() && self.addrs.len() >= MAX_ENTRIES {
            self.addrs
                .retain(|_, f| now.saturating_sub(f.last) <= p.window_secs || f.locked_until > now);
        }
        let key = Self::user_key(username);
        // Always the username's entry first, then the address's: one order, no deadlock. Both
        // stay held from the lock check to the count, so the two are one step.
        let mut user = self.users.entry(key.clone()).or_default();
        user.refresh(now, p.window_secs);
        let mut address = addr.map(|a| (a, self.addrs.entry(a).or_default()));
        if let Some((_, f)) = address.as_mut() {
            f.refresh(now, p.window_secs);
        }
        let until = user
            .locked_until
            .max(address.as_ref().map_or(0, |(_, f)| f.locked_until));
        if until > now {
            return Admission::Locked {
                retry_after: until - now,
            };
        }
        user.count_one(now, p.lockout_after, p.lockout_secs);
        let addr = address.as_mut().map(|(a, f)| {
            f.count_one(now, self.addr_limit(), p.lockout_secs);
            (*a, f.generation)
        });
        Admission::Admitted(Reservation {
            user: key,
            user_generation: user.generation,
            addr,
            count: user.count,
        })
    }

    /// The password was wrong: the reservation stands as a failure. Returns how long to wait
    /// before answering it.
    pub fn failed(&self, reservation: Reservation) -> Duration {
        let p = self.policy;
        let count = reservation.count;
        if count >= p.lockout_after {
            // The failure that locked the name waits longest.
            return p.max_delay;
        }
        match count.checked_sub(p.free_failures + 1) {
            None => Duration::ZERO,
            Some(over) => p.base_delay.saturating_mul(1 << over.min(16)).min(p.max_delay),
        }
    }

    /// A successful sign-in clears the username's failures. The address keeps its earlier
    /// failures (one good password from an address says nothing about its other attempts) but
    /// not this reservation, which was no failure.
    pub fn succeeded(&self, reservation: Reservation) {
        // Reset rather than removed: a new generation keeps a late give-back of an attempt
        // reserved before this success from counting against the fresh window.
        if let Some(mut f) = self.users.get_mut(&reservation.user) {
            *f = Failures {
                generation: f.generation.wrapping_add(1),
                ..Failures::default()
            };
        }
        self.give_back_addr(reservation.addr);
    }

    /// The password was never checked (the server was too busy): the reservation is returned.
    pub fn give_back(&self, reservation: Reservation) {
        if let Some(mut f) = self.users.get_mut(&reservation.user) {
            f.give_back(reservation.user_generation, self.policy.lockout_after);
        }
        self.give_back_addr(reservation.addr);
    }

    fn give_back_addr(&self, addr: Option<(IpAddr, u32)>) {
        if let Some((a, generation)) = addr {
            if let Some(mut f) = self.addrs.get_mut(&a) {
                f.give_back(generation, self.addr_limit());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            free_failures: 2,
            lockout_after: 4,
            lockout_secs: 60,
            window_secs: 100,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        }
    }

    const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    fn admitted(t: &Throttle, name: &str, addr: Option<IpAddr>, now: u64) -> Reservation {
        match t.reserve(name, addr, now) {
            Admission::Admitted(r) => r,
            Admission::Locked { retry_after } => panic!("{name} locked for {retry_after} s"),
        }
    }

    /// A sign-in that reaches the password check and fails; returns its delay.
    fn fail(t: &Throttle, name: &str, addr: Option<IpAddr>, now: u64) -> Duration {
        let r = admitted(t, name, addr, now);
        t.failed(r)
    }

    fn locked(t: &Throttle, name: &str, addr: Option<IpAddr>, now: u64) -> Option<u64> {
        match t.reserve(name, addr, now) {
            Admission::Admitted(r) => {
                t.give_back(r);
                None
            }
            Admission::Locked { retry_after } => Some(retry_after),
        }
    }

    #[test]
    fn delays_grow_then_the_name_is_locked_for_a_while() {
        let t = Throttle::new(policy());
        let delays: Vec<u128> = (0..3).map(|_| fail(&t, "alice", ADDR, 10).as_millis()).collect();
        assert_eq!(delays, [0, 0, 100]);
        assert_eq!(locked(&t, "alice", ADDR, 10), None);
        assert_eq!(
            fail(&t, "Alice", ADDR, 11).as_millis(),
            1000,
            "the locking failure waits longest"
        );
        assert_eq!(locked(&t, "alice", None, 12), Some(59));
        assert_eq!(locked(&t, "ALICE", None, 12), Some(59), "case does not matter");
        assert_eq!(locked(&t, "bob", None, 12), None, "other names are not affected");
        assert_eq!(locked(&t, "alice", None, 71), None, "the lock ends");
        assert_eq!(
            fail(&t, "alice", None, 71).as_millis(),
            0,
            "and the count starts afresh"
        );
    }

    #[test]
    fn old_failures_stop_counting_and_success_forgives() {
        let t = Throttle::new(policy());
        for now in [0, 1, 2] {
            fail(&t, "alice", None, now);
        }
        assert_eq!(
            fail(&t, "alice", None, 200).as_millis(),
            0,
            "outside the window: counted afresh"
        );
        fail(&t, "alice", None, 201);
        let r = admitted(&t, "alice", None, 202);
        t.succeeded(r);
        assert_eq!(fail(&t, "alice", None, 202).as_millis(), 0);
    }

    #[test]
    fn an_address_trying_many_names_is_locked_too() {
        let t = Throttle::new(policy());
        // 4 × 5 failures from one address, spread over names that each stay under their limit.
        for i in 0..20 {
            fail(&t, &format!("user{}", i % 10), ADDR, 5);
        }
        assert!(locked(&t, "someone-else", ADDR, 6).is_some());
        assert_eq!(locked(&t, "someone-else", None, 6), None);
    }

    #[test]
    fn a_reservation_counts_before_its_check_is_settled() {
        let t = Throttle::new(policy());
        let pending: Vec<Reservation> = (0..4).map(|_| admitted(&t, "alice", ADDR, 10)).collect();
        assert_eq!(
            locked(&t, "alice", None, 10),
            Some(60),
            "four checks under way use up the allowance"
        );
        for r in pending {
            t.failed(r);
        }
        assert_eq!(locked(&t, "alice", None, 10), Some(60));
    }

    #[test]
    fn giving_back_returns_the_allowance_and_lifts_the_lock_it_completed() {
        let t = Throttle::new(policy());
        let mut pending: Vec<Reservation> = (0..4).map(|_| admitted(&t, "alice", ADDR, 10)).collect();
        assert!(locked(&t, "alice", None, 10).is_some());
        t.give_back(pending.pop().unwrap());
        let again = admitted(&t, "alice", ADDR, 10);
        assert!(
            locked(&t, "alice", None, 10).is_some(),
            "the allowance is used up again"
        );
        t.failed(again);
        for r in pending {
            t.failed(r);
        }
        assert!(locked(&t, "alice", None, 10).is_some());
    }

    #[test]
    fn a_late_give_back_from_an_earlier_window_changes_nothing() {
        let t = Throttle::new(policy());
        let old = admitted(&t, "alice", None, 0);
        for _ in 0..3 {
            fail(&t, "alice", None, 200);
        }
        t.give_back(old);
        assert_eq!(
            fail(&t, "alice", None, 200).as_millis(),
            1000,
            "the fourth failure of this window locks"
        );
        assert!(locked(&t, "alice", None, 201).is_some());
    }

    #[test]
    fn successes_from_an_address_do_not_count_against_it() {
        let t = Throttle::new(policy());
        for i in 0..50 {
            let r = admitted(&t, &format!("user{i}"), ADDR, 5);
            t.succeeded(r);
        }
        assert_eq!(locked(&t, "someone-else", ADDR, 5), None);
    }

    #[test]
    fn many_threads_at_once_never_get_more_than_the_allowance() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Barrier;
        let t = Throttle::new(ThrottlePolicy {
            lockout_after: 10,
            ..policy()
        });
        let threads = 16;
        let start = Barrier::new(threads);
        let kept = AtomicU32::new(0);
        std::thread::scope(|s| {
            for n in 0..threads {
                let (t, start, kept) = (&t, &start, &kept);
                s.spawn(move || {
                    start.wait();
                    for i in 0..200 {
                        if let Admission::Admitted(r) = t.reserve("alice", ADDR, 10) {
                            // Every third admitted check "times out" and gives its place back.
                            if (n + i) % 3 == 0 {
                                t.give_back(r);
                            } else {
                                t.failed(r);
                                kept.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        let kept = kept.into_inner();
        assert!(kept <= 10, "{kept} failures were checked, the allowance is 10");
        assert!(kept > 0);
        assert!(locked(&t, "alice", None, 10).is_some());
    }
}
