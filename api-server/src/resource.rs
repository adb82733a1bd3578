//! [`ResourceServer`]: turns a bearer token into an authenticated [`Caller`] or an [`AuthError`],
//! through the cache, single-flight, and the breaker.
//!
//! The order of a lookup, and why:
//! 1. the cache (a hit never touches the breaker, so cached tokens keep working while Tessera is
//!    down, until their entry expires);
//! 2. on a miss, one load per token at a time: concurrent requests for one uncached token wait
//!    for the first one's call (moka's `entry().or_try_insert_with`), and share its answer or its
//!    error; errors are not cached;
//! 3. the load asks the breaker first; while it is open, the load fails at once with the time
//!    left, and the caller answers 503 with `Retry-After`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use crate::breaker::{Admission, Breaker, BreakerState};
use crate::cache::{self, Cache, Cached, Digester};
use crate::error::AuthError;
use crate::introspect::{Introspector, TokenInfo, UpstreamError, Verdict};

/// How to reach Tessera and how to cache and guard what it says.
#[derive(Debug, Clone)]
pub struct ResourceServerConfig {
    /// Tessera's base URL; introspection is at `/oauth/introspect`.
    pub tessera_url: String,
    /// This resource server's client credentials at Tessera.
    pub client_id: String,
    pub client_secret: String,
    /// How long an active token's answer is reused (never past the token's `exp`).
    pub cache_ttl: Duration,
    /// How long an inactive token's answer is reused.
    pub negative_ttl: Duration,
    /// Most entries kept.
    pub cache_capacity: u64,
    /// Consecutive failed introspection calls that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before it lets a probe through.
    pub breaker_open: Duration,
    /// Limit on one introspection call, connection included.
    pub upstream_timeout: Duration,
}

impl ResourceServerConfig {
    /// The defaults, for a resource server registered at Tessera as `client_id`.
    pub fn new(tessera_url: &str, client_id: &str, client_secret: &str) -> ResourceServerConfig {
        ResourceServerConfig {
            tessera_url: tessera_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            cache_ttl: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(1),
            cache_capacity: 100_000,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// The authenticated caller of a request: what Tessera said about its access token.
#[derive(Debug, Clone)]
pub struct Caller(Arc<TokenInfo>);

impl Deref for Caller {
    type Target = TokenInfo;
    fn deref(&self) -> &TokenInfo {
        &self.0
    }
}

impl Caller {
    /// Passes when the token was granted `scope`; otherwise the RFC 6750 `insufficient_scope`.
    pub fn require(&self, scope: &str) -> Result<(), AuthError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(scope.into()))
        }
    }
}

/// Cheap to clone; every clone shares one cache, breaker and connection pool. Build it after
/// the process's metrics recorder is installed: it registers its metrics when it is made.
#[derive(Clone)]
pub struct ResourceServer(Arc<Inner>);

struct Inner {
    introspector: Introspector,
    cache: Cache,
    breaker: Breaker,
    digester: Digester,
    cache_ttl: Duration,
    negative_ttl: Duration,
    counts: Counts,
}

/// Handles registered once, so the hot path does no metric lookups.
struct Counts {
    hit: Counter,
    negative_hit: Counter,
    miss: Counter,
    coalesced: Counter,
    upstream_active: Counter,
    upstream_inactive: Counter,
    upstream_duration: Histogram,
    entries: metrics::Gauge,
}

impl Counts {
    fn register() -> Counts {
        use crate::metrics::*;
        let lookup = |result: &'static str| metrics::counter!(CACHE_LOOKUPS, "result" => result);
        let upstream = |outcome: &'static str| metrics::counter!(UPSTREAM_CALLS, "outcome" => outcome);
        Counts {
            hit: lookup("hit"),
            negative_hit: lookup("negative_hit"),
            miss: lookup("miss"),
            coalesced: lookup("coalesced"),
            upstream_active: upstream("active"),
            upstream_inactive: upstream("inactive"),
            upstream_duration: metrics::histogram!(UPSTREAM_DURATION),
            entries: metrics::gauge!(CACHE_ENTRIES),
        }
    }
}

impl ResourceServer {
    pub fn new(config: &ResourceServerConfig) -> Result<ResourceServer, String> {
        let introspector = Introspector::new(
            &config.tessera_url,
            &config.client_id,
            &config.client_secret,
            config.upstream_timeout,
        )?;
        Ok(ResourceServer(Arc::new(Inner {
            introspector,
            cache: cache::build(config.cache_capacity),
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            digester: Digester::random(),
            cache_ttl: config.cache_ttl,
            negative_ttl: config.negative_ttl,
            counts: Counts::register(),
        })))
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.0.breaker.state()
    }

    /// Authenticates a bearer token: the caller, or why not.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let inner = &*self.0;
        let key = inner.digester.digest(token);
        if let Some(cached) = inner.cache.get(&key).await {
            let counter = if cached.info.is_some() {
                &inner.counts.hit
            } else {
                &inner.counts.negative_hit
            };
            counter.increment(1);
            return caller_from(cached);
        }
        let entry = inner
            .cache
            .entry(key)
            .or_try_insert_with(self.load(token))
            .await
            .map_err(|shared| (*shared).clone())?;
        if entry.is_fresh() {
            inner.counts.miss.increment(1);
            inner.counts.entries.set(inner.cache.entry_count() as f64);
        } else {
            inner.counts.coalesced.increment(1);
        }
        caller_from(entry.into_value())
    }

    /// One call to Tessera, if the breaker allows it.
    async fn load(&self, token: &str) -> Result<Cached, AuthError> {
        let inner = &*self.0;
        let permit = match inner.breaker.admit(Instant::now()) {
            Admission::Call(permit) => permit,
            Admission::Refused { retry_after } => return Err(AuthError::Unavailable { retry_after }),
        };
        let started = Instant::now();
        let answer = inner.introspector.introspect(token).await;
        let done = Instant::now();
        inner.counts.upstream_duration.record(done - started);
        match answer {
            Ok(verdict) => {
                permit.succeeded(done);
                match verdict {
                    Verdict::Active(_) => inner.counts.upstream_active.increment(1),
                    Verdict::Inactive => inner.counts.upstream_inactive.increment(1),
                }
                Ok(cache::admit(verdict, unix_ms(), inner.cache_ttl, inner.negative_ttl))
            }
            Err(e) => {
                permit.failed(done);
                record_failure(&e);
                Err(AuthError::Unavailable {
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}

fn record_failure(e: &UpstreamError) {
    metrics::counter!(crate::metrics::UPSTREAM_CALLS, "outcome" => e.kind()).increment(1);
    tracing::warn!(error = %e, "token introspection failed");
}

/// A cached answer as the request sees it. The `exp` check backs up the entry's TTL, which
/// already ends by `exp`.
fn caller_from(cached: Cached) -> Result<Caller, AuthError> {
    match cached.info {
        Some(info) if info.exp.is_none_or(|exp| unix_ms() < exp.saturating_mul(1000)) => Ok(Caller(info)),
        _ => Err(AuthError::InvalidToken),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
