//! Rate limits and quotas: how fast a caller may ask, decided before the work is done.
//!
//! - failed client authentications, per client id and address (an unknown client id by
//!   address alone, so made-up ids create no state of their own): a client over its allowance
//!   is refused before its secret is checked, so a secret cannot be guessed quickly, while the
//!   real client at another address is not locked out;
//! - a per-client requests-per-second limit on the token, introspection and revocation
//!   endpoints (`rate_limit_per_sec` of the client; 0 means none), so that one noisy resource
//!   server cannot starve the others;
//! - a per-address limit on the browser-facing endpoints (authorize, login, userinfo).
//!
//! Limiters are GCRA (`governor`). Every keyed map is bounded: idle keys are dropped with
//! `retain_recent`, and a map that still holds [`MAX_KEYS`] after that is emptied, since a
//! flood from that many addresses cannot be told apart anyway. Which address a request comes
//! from is decided in [`proxies`]. No HTTP here: a refusal is a [`Limited`] value.

pub mod proxies;
mod refusals;

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

pub use proxies::TrustedProxies;
use refusals::Refusals;

/// Most keys one keyed limiter holds.
pub const MAX_KEYS: usize = 100_000;
/// Idle keys are dropped every this many checks of a keyed limiter.
const PRUNE_EVERY: u64 = 4096;

/// The settings of every limit (from `Settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Failed client authentications allowed back to back per client and address.
    pub auth_failure_burst: u32,
    /// Failures allowed per minute after the burst.
    pub auth_failures_per_min: u32,
    /// Requests per second per address to authorize, login and userinfo; 0 means no limit.
    pub address_rate_per_sec: u32,
    /// Requests allowed back to back per address before that rate applies.
    pub address_burst: u32,
    pub trusted_proxies: TrustedProxies,
}

impl Default for LimitPolicy {
    /// Chosen so that a person never meets them and a flood does: ten wrong secrets in a row,
    /// then one every six seconds; a hundred browser requests in a burst from one address,
    /// then twenty a second.
    fn default() -> Self {
        LimitPolicy {
            auth_failure_burst: 10,
            auth_failures_per_min: 10,
            address_rate_per_sec: 20,
            address_burst: 100,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A refusal: why, and when asking again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// `client_auth_failures`, `client_rate` or `address_rate` (the metric's `reason`).
    pub reason: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// A keyed GCRA limiter whose key count stays bounded. The limiter sits behind a lock only so
/// that a full one can be replaced; checks take the lock shared.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    quota: Quota,
    limiter: RwLock<DefaultKeyedRateLimiter<K>>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Quota) -> Self {
        Keyed {
            quota,
            limiter: RwLock::new(DefaultKeyedRateLimiter::dashmap(quota)),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one cell for `key`; `Err` is how long until one is free.
    fn check(&self, key: &K, clock: &DefaultClock) -> Result<(), Duration> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 || (n.is_multiple_of(64) && self.len() >= MAX_KEYS) {
            self.prune();
        }
        let limiter = self.limiter.read().unwrap_or_else(|e| e.into_inner());
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    fn len(&self) -> usize {
        self.limiter.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn prune(&self) {
        let mut limiter = self.limiter.write().unwrap_or_else(|e| e.into_inner());
        limiter.retain_recent();
        if limiter.len() >= MAX_KEYS {
            tracing::warn!(keys = MAX_KEYS, "a rate limiter is full; forgetting its state");
            *limiter = DefaultKeyedRateLimiter::dashmap(self.quota);
        }
        limiter.shrink_to_fit();
    }
}

/// Whose failures are counted together: a registered client at an address, or anyone at an
/// address (failures of unknown client ids). Held as a keyed hash (random per process), so
/// that the check before every authentication neither allocates nor copies the client id.
type FailureKey = u64;

pub struct Limits {
    policy: LimitPolicy,
    clock: DefaultClock,
    hasher: ahash::RandomState,
    failures: Keyed<FailureKey>,
    /// Keys over their failure allowance, and until when. Usually empty, and then the check
    /// before an authentication is one atomic load.
    blocked: DashMap<FailureKey, Instant, ahash::RandomState>,
    blocked_count: AtomicUsize,
    /// One limiter per client with a `rate_limit_per_sec`, with the rate it was made for, so
    /// that a changed rate takes effect. Bounded by the clients registered with a limit.
    clients: DashMap<String, (u32, Arc<DefaultDirectRateLimiter>), ahash::RandomState>,
    addresses: Option<Keyed<IpAddr>>,
    refusals: Refusals,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    /// Limits under `policy`; refusals are audited to `audit`.
    pub fn new(policy: LimitPolicy, audit: crate::audit::Audit) -> Self {
        let failures =
            Quota::per_minute(nonzero(policy.auth_failures_per_min)).allow_burst(nonzero(policy.auth_failure_burst));
        let addresses = (policy.address_rate_per_sec > 0).then(|| {
            Keyed::new(
                Quota::per_second(nonzero(policy.address_rate_per_sec))
                    .allow_burst(nonzero(policy.address_burst.max(policy.address_rate_per_sec))),
            )
        });
        Limits {
            policy,
            clock: DefaultClock::default(),
            hasher: ahash::RandomState::new(),
            failures: Keyed::new(failures),
            blocked: DashMap::with_hasher(ahash::RandomState::new()),
            blocked_count: AtomicUsize::new(0),
            clients: DashMap::with_hasher(ahash::RandomState::new()),
            addresses,
            refusals: Refusals::new(audit),
        }
    }

    /// Records that `endpoint` (a route pattern) refused a request under `limited`: counted,
    /// and audited at most once a second per endpoint and reason.
    pub fn refused(&self, endpoint: &'static str, limited: &Limited) {
        self.refusals.record(endpoint, limited, crate::unix_now());
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.policy.trusted_proxies
    }

    fn failure_key(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> FailureKey {
        let addr = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.hasher.hash_one((client_id, addr))
    }

    /// Before a secret is checked: is this client (`None` when the id is unknown) at `addr`
    /// over its allowance of failures?
    pub fn check_auth_allowed(&self, client_id: Option<&str>, addr: Option<IpAddr>) -> Result<(), Limited> {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let key = self.failure_key(client_id, addr);
        let Some(until) = self.blocked.get(&key).map(|u| *u) else {
            return Ok(());
        };
        let now = Instant::now();
        if until <= now {
            if self.blocked.remove_if(&key, |_, u| *u <= now).is_some() {
                self.blocked_count.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        Err(Limited {
            reason: "client_auth_failures",
            retry_after: until - now,
        })
    }

    /// After a secret failed: counts the failure, and once the allowance is spent, blocks the
    /// key until the next failure would be allowed.
    pub fn record_auth_failure(&self, client_id: Option<&str>, addr: Option<IpAddr>) {
        let key = self.failure_key(client_id, addr);
        let Err(wait) = self.failures.check(&key, &self.clock) else {
            return;
        };
        if self.blocked.len() >= MAX_KEYS {
            let now = Instant::now();
            self.blocked.retain(|_, until| *until > now);
            self.blocked_count.store(self.blocked.len(), Ordering::Relaxed);
            if self.blocked.len() >= MAX_KEYS {
                return;
            }
        }
        if self.blocked.insert(key, Instant::now() + wait).is_none() {
            self.blocked_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request of an authenticated client with a `rate_limit_per_sec` of `rate` (0: none).
    pub fn check_client_rate(&self, client_id: &str, rate: u32) -> Result<(), Limited> {
        if rate == 0 {
            return Ok(());
        }
        // The map's guard is dropped before any insert: holding it there would deadlock.
        let current = self
            .clients
            .get(client_id)
            .filter(|entry| entry.0 == rate)
            .map(|entry| Arc::clone(&entry.1));
        let limiter = match current {
            Some(limiter) => limiter,
            None => {
                let limiter = Arc::new(DefaultDirectRateLimiter::direct(Quota::per_second(nonzero(rate))));
                self.clients.insert(client_id.to_owned(), (rate, Arc::clone(&limiter)));
                limiter
            }
        };
        limiter.check().map_err(|not_until| Limited {
            reason: "client_rate",
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// Drops the rate limiter of a removed client, so that the map stays bounded by the clients
    /// registered, and a client id registered again starts with a full allowance.
    pub fn forget_client(&self, client_id: &str) {
        self.clients.remove(client_id);
    }

    /// A request to a browser-facing endpoint from `addr`.
    pub fn check_address(&self, addr: Option<IpAddr>) -> Result<(), Limited> {
        let (Some(limiter), Some(addr)) = (&self.addresses, addr) else {
            return Ok(());
        };
        limiter.check(&addr, &self.clock).map_err(|retry_after| Limited {
            reason: "address_rate",
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn policy() -> LimitPolicy {
        LimitPolicy {
            auth_failure_burst: 3,
            auth_failures_per_min: 1,
            address_rate_per_sec: 1,
            address_burst: 2,
            trusted_proxies: TrustedProxies::default(),
        }
    }

    #[test]
    fn a_forgotten_client_starts_again_with_a_full_allowance() {
        let l = Limits::new(policy(), crate::audit::Audit::off());
        assert_eq!(l.check_client_rate("app", 1), Ok(()));
        assert!(l.check_client_rate("app", 1).is_err(), "one a second");
        l.forget_client("app");
        assert!(l.clients.is_empty());
        assert_eq!(l.check_client_rate("app", 1), Ok(()));
    }

    #[test]
    fn failures_block_one_client_at_one_address_only() {
        let l = Limits::new(policy(), crate::audit::Audit::off());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            assert_eq!(l.check_auth_allowed(Some("app"), a), Ok(()));
            l.record_auth_failure(Some("app"), a);
        }
        assert_eq!(
            l.check_auth_allowed(Some("app"), a),
            Ok(()),
            "the burst is not spent yet"
        );
        l.record_auth_failure(Some("app"), a);
        let refused = l.check_auth_allowed(Some("app"), a).unwrap_err();
        assert_eq!(refused.reason, "client_auth_failures");
        assert!((50..=60).contains(&refused.retry_after_secs()), "{refused:?}");
        assert_eq!(
            l.check_auth_allowed(Some("app"), b),
            Ok(()),
            "the same client elsewhere"
        );
        assert_eq!(l.check_auth_allowed(Some("other"), a), Ok(()), "another client here");
        assert_eq!(l.check_auth_allowed(None, a), Ok(()), "unknown ids are keyed apart");
    }

    #[test]
    fn unknown_ids_share_one_key_per_address() {
        let l = Limits::new(policy(), crate::audit::Audit::off());
        let a = ip("192.0.2.1");
        // Made-up ids are not part of the key: they all count against the address.
        for n in 0..4 {
            assert_eq!(l.failure_key(None, a), l.failure_key(None, a), "{n}");
            l.record_auth_failure(None, a);
        }
        assert!(l.check_auth_allowed(None, a).is_err());
        assert_eq!(l.failures.len(), 1);
    }

    #[test]
    fn client_rates_apply_per_client_and_follow_changes() {
        let l = Limits::new(policy(), crate::audit::Audit::off());
        assert_eq!(l.check_client_rate("quiet", 0), Ok(()));
        assert_eq!(l.check_client_rate("noisy", 2), Ok(()));
        assert_eq!(l.check_client_rate("noisy", 2), Ok(()));
        let refused = l.check_client_rate("noisy", 2).unwrap_err();
        assert_eq!((refused.reason, refused.retry_after_secs()), ("client_rate", 1));
        assert_eq!(l.check_client_rate("other", 2), Ok(()), "another client is served");
        assert_eq!(l.check_client_rate("noisy", 1000), Ok(()), "a new rate, a new limiter");
        for _ in 0..1000 {
            assert_eq!(l.check_client_rate("quiet", 0), Ok(()), "0 is no limit");
        }
    }

    #[test]
    fn addresses_are_limited_apart_and_zero_turns_it_off() {
        let l = Limits::new(policy(), crate::audit::Audit::off());
        let (a, b) = (ip("192.0.2.1"), ip("2001:db8::1"));
        assert_eq!(l.check_address(a), Ok(()));
        assert_eq!(l.check_address(a), Ok(()));
        assert_eq!(l.check_address(a).unwrap_err().reason, "address_rate");
        assert_eq!(l.check_address(b), Ok(()));
        let off = Limits::new(
            LimitPolicy {
                address_rate_per_sec: 0,
                ..policy()
            },
            crate::audit::Audit::off(),
        );
        for _ in 0..100 {
            assert_eq!(off.check_address(a), Ok(()));
        }
    }

    #[test]
    fn keyed_state_stays_bounded() {
        let l = Limits::new(
            LimitPolicy {
                address_rate_per_sec: 1000,
                address_burst: 1000,
                ..policy()
            },
            crate::audit::Audit::off(),
        );
        let limiter = l.addresses.as_ref().unwrap();
        for n in 0..(MAX_KEYS as u32 + 10) {
            let _ = l.check_address(Some(IpAddr::V4(Ipv4Addr::from(n))));
        }
        assert!(limiter.len() <= MAX_KEYS, "{}", limiter.len());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let l = |ms| Limited {
            reason: "x",
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(l(0).retry_after_secs(), 1);
        assert_eq!(l(1).retry_after_secs(), 1);
        assert_eq!(l(1000).retry_after_secs(), 1);
        assert_eq!(l(1001).retry_after_secs(), 2);
    }
}
