//! The introspection cache: what Tessera said about a token, kept briefly and keyed by a digest
//! of the token, never the token itself.
//!
//! Guarantees:
//! - keys are HMAC-SHA256 digests under a key made at start and never stored, so a memory dump
//!   does not yield usable tokens and keys cannot be precomputed;
//! - an active answer is kept for at most its TTL and never past the token's own `exp`; an
//!   inactive answer is kept for the (shorter) negative TTL, so a flood of made-up tokens costs
//!   one call to Tessera per token and per negative TTL, not one per request;
//! - an inactive answer admitted while the feed is connected is kept for the longer
//!   `negative_ttl_with_feed`. That costs no safety: an inactive token (unknown, expired,
//!   revoked, for another audience) never turns active at Tessera, so keeping the answer only
//!   ever refuses. It stays short without the feed so that an operator's mistake (Tessera
//!   started on the wrong data for a moment) is forgotten within a second; with the feed, a
//!   Tessera whose log went backwards sends a reset, and a reset drops every entry;
//! - the TTL of an active answer is the short one (`cache_ttl`, bounded by Tessera's
//!   `cache_max_age` hint) unless the revocation feed is connected when it is admitted: then it
//!   is the long one (`cache_ttl_with_feed`, bounded by the `cache_max_age_with_feed` hint);
//! - an entry given the long TTL remembers the feed's epoch and when its short TTL would have
//!   ended ([`FeedCover`]); once the feed no longer covers that epoch, the entry counts as
//!   expired from then on ([`Cached::expired_without_feed`]), so no entry outlives its short TTL
//!   while the feed is down, whether it was admitted long before the drop or just before it;
//! - the cache is bounded in entries (moka's TinyLFU decides what goes), and every entry that
//!   leaves, for whatever cause, is reported to the listener given to [`build`] (the feed's
//!   index forgets it there).
//!
//! How long an answer may live is decided by the pure function [`admit`], tested below.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::introspect::{TokenInfo, Verdict};

pub type Digest = [u8; 32];

/// The configured TTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// An active answer, without the feed.
    pub ttl: Duration,
    /// An active answer admitted while the feed is connected.
    pub ttl_with_feed: Duration,
    /// An inactive answer, without the feed.
    pub negative_ttl: Duration,
    /// An inactive answer admitted while the feed is connected.
    pub negative_ttl_with_feed: Duration,
}

/// What an entry admitted under the feed needs to fall back when the feed drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCover {
    /// The feed's epoch at admission: the entry is covered while the feed is connected in it.
    pub epoch: NonZeroU64,
    /// When the entry's short TTL ends: past it, an uncovered entry is expired.
    pub fallback_until: Instant,
}

/// A cached answer: the token's info, or `None` for "inactive".
#[derive(Debug, Clone)]
pub struct Cached {
    pub info: Option<Arc<TokenInfo>>,
    pub ttl: Duration,
    /// Set when the entry got a TTL longer than its short one because the feed was connected.
    pub feed: Option<FeedCover>,
    /// Unique per admission of an active answer (0 for the others): what the feed's index
    /// recorded for this entry, so its removal unindexes this admission only.
    pub stamp: u64,
}

impl Cached {
    /// Whether the entry must not be used any more although the cache still holds it: it got
    /// the long TTL, the feed no longer covers its epoch (`coverage` gives the feed's current
    /// epoch, 0 when disconnected) and its short TTL is over. Both are read lazily: an entry
    /// with the short TTL reads neither, and a covered one does not read the clock.
    #[inline]
    pub fn expired_without_feed(&self, coverage: impl FnOnce() -> u64, now: impl FnOnce() -> Instant) -> bool {
        match &self.feed {
            Some(cover) => cover.epoch.get() != coverage() && now() >= cover.fallback_until,
            None => false,
        }
    }
}

/// Decides what to cache for `verdict` and for how long, at `now_ms` (milliseconds since the
/// Unix epoch) and `now` (the same moment on the monotonic clock). `feed` is the feed's epoch
/// when it is connected.
///
/// An active answer lives `min(ttl, cache_max_age, exp − now)` without the feed, and
/// `min(ttl_with_feed, cache_max_age_with_feed, exp − now)` with it; hints Tessera did not send
/// do not bound. One whose `exp` has already passed is cached as inactive, for
/// `negative_ttl_with_feed` with the feed and `negative_ttl` without it.
pub fn admit(verdict: Verdict, now_ms: u64, now: Instant, lifetimes: &Lifetimes, feed: Option<NonZeroU64>) -> Cached {
    let inactive = Cached {
        info: None,
        ttl: match feed {
            Some(_) => lifetimes.negative_ttl_with_feed,
            None => lifetimes.negative_ttl,
        },
        feed: None,
        stamp: 0,
    };
    let Verdict::Active(info) = verdict else {
        return inactive;
    };
    let left = match info.exp {
        None => Duration::MAX,
        Some(exp) => Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms)),
    };
    if left.is_zero() {
        return inactive;
    }
    let hint = |secs: Option<u64>| secs.map_or(Duration::MAX, Duration::from_secs);
    let short = lifetimes.ttl.min(hint(info.cache_max_age)).min(left);
    let (ttl, feed) = match feed {
        Some(epoch) => {
            let long = lifetimes
                .ttl_with_feed
                .min(hint(info.cache_max_age_with_feed))
                .min(left);
            // Only an entry that would outlive its short TTL needs to fall back (and a short
            // TTL too long for the clock to add is as good as none).
            let cover = (long > short)
                .then(|| now.checked_add(short))
                .flatten()
                .map(|fallback_until| FeedCover { epoch, fallback_until });
            (long, cover)
        }
        None => (short, None),
    };
    Cached {
        info: Some(Arc::new(info)),
        ttl,
        feed,
        stamp: 0,
    }
}

/// Now, in milliseconds since the Unix epoch, the clock [`admit`] is given.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Per-entry expiry: each entry lives for the TTL [`admit`] gave it.
struct ByAnswer;

impl moka::Expiry<Digest, Cached> for ByAnswer {
    fn expire_after_create(&self, _key: &Digest, value: &Cached, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub type Cache = moka::future::Cache<Digest, Cached>;

/// A cache of at most `capacity` entries; `on_removal` hears of every entry that leaves it
/// (expired, evicted for room, invalidated, replaced). It must not panic: moka stops calling a
/// listener that did.
pub fn build(capacity: u64, on_removal: impl Fn(&Digest, &Cached) + Send + Sync + 'static) -> Cache {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .expire_after(ByAnswer)
        .eviction_listener(move |key: Arc<Digest>, value: Cached, _cause| on_removal(&key, &value))
        .build()
}

/// Digests tokens under a key that lives only in this process.
#[derive(Clone)]
pub struct Digester(Hmac<Sha256>);

impl Digester {
    pub fn random() -> Digester {
        let key: [u8; 32] = rand::random();
        Digester(Hmac::new_from_slice(&key).expect("HMAC takes any key length"))
    }

    pub fn digest(&self, token: &str) -> Digest {
        let mut mac = self.0.clone();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;

    const TTL: Duration = Duration::from_secs(5);
    const LONG: Duration = Duration::from_secs(300);
    const NEG: Duration = Duration::from_secs(1);
    const NEG_LONG: Duration = Duration::from_secs(60);
    const NOW_MS: u64 = 1_800_000_000_000;
    const LIFETIMES: Lifetimes = Lifetimes {
        ttl: TTL,
        ttl_with_feed: LONG,
        negative_ttl: NEG,
        negative_ttl_with_feed: NEG_LONG,
    };
    const EPOCH: Option<NonZeroU64> = NonZeroU64::new(3);

    fn hinted(exp: Option<u64>, max_age: Option<u64>, with_feed: Option<u64>) -> Verdict {
        Verdict::Active(TokenInfo {
            client_id: "c".into(),
            sub: None,
            username: None,
            scopes: Scopes::parse("read"),
            exp,
            iat: None,
            jti: None,
            grant_id: None,
            cache_max_age: max_age,
            cache_max_age_with_feed: with_feed,
        })
    }

    fn active(exp: Option<u64>) -> Verdict {
        hinted(exp, None, None)
    }

    fn admit_now(verdict: Verdict, feed: Option<NonZeroU64>) -> (Cached, Instant) {
        let now = Instant::now();
        (admit(verdict, NOW_MS, now, &LIFETIMES, feed), now)
    }

    const HOUR: Option<u64> = Some(NOW_MS / 1000 + 3600);

    #[test]
    fn an_active_token_is_kept_for_the_ttl() {
        let (c, _) = admit_now(active(HOUR), None);
        assert_eq!(c.ttl, TTL);
        assert!(c.info.is_some());
        assert_eq!(c.feed, None);
        assert_eq!(admit_now(active(None), None).0.ttl, TTL);
    }

    #[test]
    fn never_past_the_tokens_own_exp() {
        let c = admit(
            active(Some(NOW_MS / 1000 + 2)),
            NOW_MS + 500,
            Instant::now(),
            &LIFETIMES,
            None,
        );
        assert_eq!(c.ttl, Duration::from_millis(1500));
        assert!(c.info.is_some());
        let c = admit(
            active(Some(NOW_MS / 1000 + 2)),
            NOW_MS + 500,
            Instant::now(),
            &LIFETIMES,
            EPOCH,
        );
        assert_eq!(c.ttl, Duration::from_millis(1500), "with the feed too");
        assert_eq!(
            c.feed, None,
            "no longer than without the feed: nothing to fall back from"
        );
    }

    #[test]
    fn an_active_answer_for_a_token_already_past_exp_is_cached_as_inactive() {
        for (feed, ttl) in [(None, NEG), (EPOCH, NEG_LONG)] {
            let (c, _) = admit_now(active(Some(NOW_MS / 1000)), feed);
            assert!(c.info.is_none());
            assert_eq!(c.ttl, ttl);
            assert_eq!(c.feed, None);
        }
    }

    #[test]
    fn inactive_answers_get_the_negative_ttl_of_their_mode() {
        for (feed, ttl) in [(None, NEG), (EPOCH, NEG_LONG)] {
            let (c, _) = admit_now(Verdict::Inactive, feed);
            assert!(c.info.is_none());
            assert_eq!(c.ttl, ttl);
            // Refusing needs no fallback: an inactive entry outliving the feed refuses only.
            assert_eq!(c.feed, None);
        }
    }

    #[test]
    fn with_the_feed_the_long_ttl_applies_and_the_short_one_is_remembered() {
        let (c, now) = admit_now(active(HOUR), EPOCH);
        assert_eq!(c.ttl, LONG);
        assert_eq!(
            c.feed,
            Some(FeedCover {
                epoch: NonZeroU64::new(3).unwrap(),
                fallback_until: now + TTL
            })
        );
        // exp bounds the long TTL too.
        let (c, now) = admit_now(active(Some(NOW_MS / 1000 + 60)), EPOCH);
        assert_eq!(c.ttl, Duration::from_secs(60));
        assert_eq!(c.feed.map(|f| f.fallback_until), Some(now + TTL));
    }

    #[test]
    fn hints_bound_the_ttl_each_in_its_mode() {
        // Without the feed only cache_max_age counts; with it only cache_max_age_with_feed.
        let both = || hinted(HOUR, Some(2), Some(30));
        assert_eq!(admit_now(both(), None).0.ttl, Duration::from_secs(2));
        let (c, now) = admit_now(both(), EPOCH);
        assert_eq!(c.ttl, Duration::from_secs(30));
        assert_eq!(c.feed.map(|f| f.fallback_until), Some(now + Duration::from_secs(2)));
        // A hint larger than the configured TTL does not lengthen it.
        assert_eq!(admit_now(hinted(HOUR, Some(60), None), None).0.ttl, TTL);
        assert_eq!(admit_now(hinted(HOUR, None, Some(3600)), EPOCH).0.ttl, LONG);
        // A hint of 0: not reused at all.
        assert_eq!(admit_now(hinted(HOUR, Some(0), Some(0)), EPOCH).0.ttl, Duration::ZERO);
        // A with-feed hint shorter than the short TTL: the short bound wins, nothing to cover.
        let (c, _) = admit_now(hinted(HOUR, None, Some(1)), EPOCH);
        assert_eq!((c.ttl, c.feed), (Duration::from_secs(1), None));
    }

    #[test]
    fn an_uncovered_entry_expires_at_the_end_of_its_short_ttl() {
        let (c, now) = admit_now(active(HOUR), EPOCH);
        let no_clock = || -> Instant { panic!("a covered entry does not read the clock") };
        assert!(!c.expired_without_feed(|| 3, no_clock), "covered: kept");
        for coverage in [0, 4] {
            assert!(!c.expired_without_feed(|| coverage, || now + TTL - Duration::from_millis(1)));
            assert!(c.expired_without_feed(|| coverage, || now + TTL));
        }
        let (short, _) = admit_now(active(HOUR), None);
        let no_feed = || -> u64 { panic!("an entry with the short TTL does not read the feed") };
        assert!(
            !short.expired_without_feed(no_feed, no_clock),
            "its own TTL is moka's business"
        );
    }

    #[test]
    fn digests_are_keyed_per_process_and_stable_within_it() {
        let (a, b) = (Digester::random(), Digester::random());
        assert_eq!(a.digest("tsa_x"), a.digest("tsa_x"));
        assert_ne!(a.digest("tsa_x"), a.digest("tsa_y"));
        assert_ne!(a.digest("tsa_x"), b.digest("tsa_x"));
    }

    fn entry(ttl: Duration, stamp: u64) -> Cached {
        Cached {
            info: None,
            ttl,
            feed: None,
            stamp,
        }
    }

    #[actix_rt::test]
    async fn entries_expire_after_their_own_ttl() {
        let cache = build(100, |_, _| {});
        cache.insert([1; 32], entry(Duration::from_millis(50), 0)).await;
        cache.insert([2; 32], entry(Duration::from_secs(60), 0)).await;
        assert!(cache.get(&[1; 32]).await.is_some());
        actix_rt::time::sleep(Duration::from_millis(120)).await;
        assert!(cache.get(&[1; 32]).await.is_none());
        assert!(cache.get(&[2; 32]).await.is_some());
    }

    #[actix_rt::test]
    async fn the_listener_hears_of_removed_entries() {
        let removed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let heard = removed.clone();
        let cache = build(100, move |key, value| heard.lock().unwrap().push((*key, value.stamp)));
        cache.insert([1; 32], entry(Duration::from_secs(60), 7)).await;
        cache.insert([2; 32], entry(Duration::from_secs(60), 8)).await;
        cache.invalidate(&[1; 32]).await;
        assert_eq!(*removed.lock().unwrap(), vec![([1; 32], 7)]);
        cache.invalidate_all();
        cache.run_pending_tasks().await;
        assert_eq!(*removed.lock().unwrap(), vec![([1; 32], 7), ([2; 32], 8)]);
    }
}
