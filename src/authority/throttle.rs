//! Throttling of failed sign-ins, per username and per client address.
//!
//! After a few free failures each further one is answered after a growing delay, and after
//! `lockout_after` failures the username (or address) is locked for `lockout_secs`. Usernames
//! are throttled whether or not they exist, with the same counters and messages, so the
//! throttle says nothing about which names are real. An address gets `ADDRESS_FACTOR` times the
//! allowance of a username, since several people may share one address. Counts live in memory:
//! a restart forgives, which costs an attacker a restart they cannot cause.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead and check the password.
    Allow,
    /// Refuse without checking the password, for this many more seconds.
    Locked { retry_after: u64 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    last: u64,
    locked_until: u64,
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

    /// Whether a sign-in as `username` from `addr` may be checked at `now`.
    pub fn check(&self, username: &str, addr: Option<IpAddr>, now: u64) -> Verdict {
        let user = self.users.get(&Self::user_key(username)).map(|f| *f);
        let addr = addr.and_then(|a| self.addrs.get(&a).map(|f| *f));
        let until = user.into_iter().chain(addr).map(|f| f.locked_until).max().unwrap_or(0);
        if until > now {
            Verdict::Locked {
                retry_after: until - now,
            }
        } else {
            Verdict::Allow
        }
    }

    /// Records a failed sign-in and returns how long to wait before answering it.
    pub fn failed(&self, username: &str, addr: Option<IpAddr>, now: u64) -> Duration {
        let p = self.policy;
        let bump = |f: &mut Failures, limit: u32| {
            if now.saturating_sub(f.last) > p.window_secs {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
            if f.count >= limit {
                f.locked_until = now + p.lockout_secs;
                f.count = 0;
            }
        };
        if self.users.len() >= MAX_ENTRIES {
            self.users.retain(|_, f| now.saturating_sub(f.last) <= p.window_secs);
        }
        let count = {
            let mut f = self.users.entry(Self::user_key(username)).or_default();
            bump(&mut f, p.lockout_after);
            f.count
        };
        if let Some(a) = addr {
            if self.addrs.len() >= MAX_ENTRIES {
                self.addrs.retain(|_, f| now.saturating_sub(f.last) <= p.window_secs);
            }
            bump(&mut self.addrs.entry(a).or_default(), p.lockout_after * ADDRESS_FACTOR);
        }
        match count.checked_sub(p.free_failures + 1) {
            // The failure that locked the name reset its count to 0: answer it at the full delay.
            _ if count == 0 => p.max_delay,
            None => Duration::ZERO,
            Some(over) => p.base_delay.saturating_mul(1 << over.min(16)).min(p.max_delay),
        }
    }

    /// A successful sign-in clears the username's failures (not the address's: one good password
    /// from an address says nothing about its other attempts).
    pub fn succeeded(&self, username: &str) {
        self.users.remove(&Self::user_key(username));
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

    #[test]
    fn delays_grow_then_the_name_is_locked_for_a_while() {
        let t = Throttle::new(policy());
        let delays: Vec<u128> = (0..3).map(|_| t.failed("alice", ADDR, 10).as_millis()).collect();
        assert_eq!(delays, [0, 0, 100]);
        assert_eq!(t.check("alice", ADDR, 10), Verdict::Allow);
        assert_eq!(
            t.failed("Alice", ADDR, 11).as_millis(),
            1000,
            "the locking failure waits longest"
        );
        assert_eq!(t.check("alice", None, 12), Verdict::Locked { retry_after: 59 });
        assert_eq!(
            t.check("ALICE", None, 12),
            Verdict::Locked { retry_after: 59 },
            "case does not matter"
        );
        assert_eq!(t.check("bob", None, 12), Verdict::Allow, "other names are not affected");
        assert_eq!(t.check("alice", None, 71), Verdict::Allow, "the lock ends");
    }

    #[test]
    fn old_failures_stop_counting_and_success_forgives() {
        let t = Throttle::new(policy());
        for now in [0, 1, 2] {
            t.failed("alice", None, now);
        }
        assert_eq!(
            t.failed("alice", None, 200).as_millis(),
            0,
            "outside the window: counted afresh"
        );
        t.failed("alice", None, 201);
        t.succeeded("alice");
        assert_eq!(t.failed("alice", None, 202).as_millis(), 0);
    }

    #[test]
    fn an_address_trying_many_names_is_locked_too() {
        let t = Throttle::new(policy());
        // 4 × 5 failures from one address, spread over names that each stay under their limit.
        for i in 0..20 {
            t.failed(&format!("user{}", i % 10), ADDR, 5);
        }
        assert!(matches!(t.check("someone-else", ADDR, 6), Verdict::Locked { .. }));
        assert_eq!(t.check("someone-else", None, 6), Verdict::Allow);
    }
}
