//! The introspection cache: what Tessera said about a token, kept briefly and keyed by a digest
//! of the token, never the token itself.
//!
//! Guarantees:
//! - keys are HMAC-SHA256 digests under a key made at start and never stored, so a memory dump
//!   does not yield usable tokens and keys cannot be precomputed;
//! - an active answer is kept for at most the configured TTL and never past the token's own
//!   `exp`; an inactive answer is kept for the (shorter) negative TTL, so a flood of made-up
//!   tokens costs one call to Tessera per token and per negative TTL, not one per request;
//! - the cache is bounded in entries (moka's TinyLFU decides what goes).
//!
//! How long an answer may live is decided by the pure function [`admit`], tested below.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::introspect::{TokenInfo, Verdict};

pub type Digest = [u8; 32];

/// A cached answer: the token's info, or `None` for "inactive".
#[derive(Clone)]
pub struct Cached {
    pub info: Option<Arc<TokenInfo>>,
    pub ttl: Duration,
}

/// Decides what to cache for `verdict` and for how long, at `now_ms` (milliseconds since the
/// Unix epoch). An active token that expires before the TTL is cached until its `exp`; one whose
/// `exp` has already passed is cached as inactive.
pub fn admit(verdict: Verdict, now_ms: u64, ttl: Duration, negative_ttl: Duration) -> Cached {
    match verdict {
        Verdict::Active(info) => {
            let left = match info.exp {
                None => ttl,
                Some(exp) => Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms)),
            };
            if left.is_zero() {
                return Cached {
                    info: None,
                    ttl: negative_ttl,
                };
            }
            Cached {
                info: Some(Arc::new(info)),
                ttl: ttl.min(left),
            }
        }
        Verdict::Inactive => Cached {
            info: None,
            ttl: negative_ttl,
        },
    }
}

/// Per-entry expiry: each entry lives for the TTL [`admit`] gave it.
struct ByAnswer;

impl moka::Expiry<Digest, Cached> for ByAnswer {
    fn expire_after_create(&self, _key: &Digest, value: &Cached, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub type Cache = moka::future::Cache<Digest, Cached>;

pub fn build(capacity: u64) -> Cache {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .expire_after(ByAnswer)
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
    const NEG: Duration = Duration::from_secs(1);
    const NOW_MS: u64 = 1_800_000_000_000;

    fn active(exp: Option<u64>) -> Verdict {
        Verdict::Active(TokenInfo {
            client_id: "c".into(),
            sub: None,
            username: None,
            scopes: Scopes::parse("read"),
            exp,
        })
    }

    #[test]
    fn an_active_token_is_kept_for_the_ttl() {
        let c = admit(active(Some(NOW_MS / 1000 + 3600)), NOW_MS, TTL, NEG);
        assert_eq!(c.ttl, TTL);
        assert!(c.info.is_some());
        assert_eq!(admit(active(None), NOW_MS, TTL, NEG).ttl, TTL);
    }

    #[test]
    fn never_past_the_tokens_own_exp() {
        let c = admit(active(Some(NOW_MS / 1000 + 2)), NOW_MS + 500, TTL, NEG);
        assert_eq!(c.ttl, Duration::from_millis(1500));
        assert!(c.info.is_some());
    }

    #[test]
    fn an_active_answer_for_a_token_already_past_exp_is_cached_as_inactive() {
        let c = admit(active(Some(NOW_MS / 1000)), NOW_MS, TTL, NEG);
        assert!(c.info.is_none());
        assert_eq!(c.ttl, NEG);
    }

    #[test]
    fn inactive_answers_get_the_negative_ttl() {
        let c = admit(Verdict::Inactive, NOW_MS, TTL, NEG);
        assert!(c.info.is_none());
        assert_eq!(c.ttl, NEG);
    }

    #[test]
    fn digests_are_keyed_per_process_and_stable_within_it() {
        let (a, b) = (Digester::random(), Digester::random());
        assert_eq!(a.digest("tsa_x"), a.digest("tsa_x"));
        assert_ne!(a.digest("tsa_x"), a.digest("tsa_y"));
        assert_ne!(a.digest("tsa_x"), b.digest("tsa_x"));
    }

    #[actix_rt::test]
    async fn entries_expire_after_their_own_ttl() {
        let cache = build(100);
        cache
            .insert(
                [1; 32],
                Cached {
                    info: None,
                    ttl: Duration::from_millis(50),
                },
            )
            .await;
        cache
            .insert(
                [2; 32],
                Cached {
                    info: None,
                    ttl: Duration::from_secs(60),
                },
            )
            .await;
        assert!(cache.get(&[1; 32]).await.is_some());
        actix_rt::time::sleep(Duration::from_millis(120)).await;
        assert!(cache.get(&[1; 32]).await.is_none());
        assert!(cache.get(&[2; 32]).await.is_some());
    }
}
