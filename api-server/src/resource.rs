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
//!
//! With the revocation feed ([`crate::feed`]):
//! - a hit is one more check, an atomic load and only for entries given the long TTL: an entry
//!   the feed no longer covers is used only until its short TTL is over, then asked again;
//! - a load whose answer names a recently revoked token, grant, user or client (an answer
//!   computed before the revocation, arriving after its event) gives "inactive";
//! - an active answer is indexed before the cache stores it, and checked against the recent
//!   revocations again once stored: an event handled in between is caught by one or the other
//!   (the feed records the revocation before it reads the index).

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use moka::ops::compute::Op;

use crate::batch::Batcher;
use crate::breaker::{Admission, Breaker, BreakerState};
use crate::cache::{self, Cache, Cached, Digest, Digester, Lifetimes};
use crate::error::AuthError;
use crate::feed::{self, FeedCounts, FeedStatus, Shared, Subscription};
use crate::introspect::{Introspector, TokenInfo, UpstreamError, Verdict};

/// How to reach Tessera and how to cache and guard what it says. `Debug` hides the secret.
#[derive(Clone)]
pub struct ResourceServerConfig {
    /// Tessera's base URL; introspection is at `/oauth/introspect`.
    pub tessera_url: String,
    /// This resource server's client credentials at Tessera.
    pub client_id: String,
    pub client_secret: String,
    /// How long an active token's answer is reused (never past the token's `exp`, nor past
    /// Tessera's `cache_max_age` hint), while the revocation feed is not connected.
    pub cache_ttl: Duration,
    /// How long an active token's answer is reused when it is admitted while the revocation
    /// feed is connected (never past `exp`, nor past the `cache_max_age_with_feed` hint). Should
    /// the feed drop, such an answer is reused for no longer than `cache_ttl` after admission.
    pub cache_ttl_with_feed: Duration,
    /// How long an inactive token's answer is reused, while the revocation feed is not
    /// connected.
    pub negative_ttl: Duration,
    /// How long an inactive token's answer is reused when it is admitted while the feed is
    /// connected (an inactive token never turns active; see [`crate::cache`]).
    pub negative_ttl_with_feed: Duration,
    /// Most entries kept.
    pub cache_capacity: u64,
    /// Consecutive failed introspection calls that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before it lets a probe through.
    pub breaker_open: Duration,
    /// Limit on one introspection call, connection included.
    pub upstream_timeout: Duration,
    /// This resource server's RFC 8707 resource indicator; when set, an active token whose
    /// `aud` does not include it is refused as invalid (RFC 9700 §2.3: a token for another API
    /// must not work here).
    pub resource: Option<String>,
    /// Subscribe to Tessera's revocation feed when it advertises one. Off, answers are only
    /// ever cached for `cache_ttl`.
    pub feed: bool,
    /// Silence (not even a heartbeat) after which the feed's stream counts as cut.
    pub feed_idle_timeout: Duration,
    /// Whether concurrent misses share introspection calls (see [`crate::batch`]).
    pub introspect_batch: bool,
}

impl std::fmt::Debug for ResourceServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServerConfig")
            .field("tessera_url", &self.tessera_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_ttl_with_feed", &self.cache_ttl_with_feed)
            .field("negative_ttl", &self.negative_ttl)
            .field("negative_ttl_with_feed", &self.negative_ttl_with_feed)
            .field("cache_capacity", &self.cache_capacity)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_open", &self.breaker_open)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("resource", &self.resource)
            .field("feed", &self.feed)
            .field("feed_idle_timeout", &self.feed_idle_timeout)
            .field("introspect_batch", &self.introspect_batch)
            .finish()
    }
}

impl ResourceServerConfig {
    /// The defaults, for a resource server registered at Tessera as `client_id`.
    pub fn new(tessera_url: &str, client_id: &str, client_secret: &str) -> ResourceServerConfig {
        ResourceServerConfig {
            tessera_url: tessera_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            cache_ttl: Duration::from_secs(5),
            cache_ttl_with_feed: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(1),
            negative_ttl_with_feed: Duration::from_secs(60),
            cache_capacity: 100_000,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(2),
            resource: None,
            feed: true,
            feed_idle_timeout: Duration::from_secs(3),
            introspect_batch: true,
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

/// Cheap to clone; every clone shares one cache, breaker, connection pool and feed subscriber.
/// Build it after the process's metrics recorder is installed: it registers its metrics when it
/// is made. Build it inside the async runtime that will serve requests (as in an
/// `#[actix_web::main]` function): the feed's subscriber is spawned on it, and stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct ResourceServer(Arc<Inner>);

struct Inner {
    /// The introspection client, behind the grouping of concurrent misses.
    upstream: Batcher,
    cache: Cache,
    breaker: Breaker,
    digester: Digester,
    lifetimes: Lifetimes,
    feed: Arc<Shared>,
    /// Source of admission stamps (see [`Cached::stamp`]); 0 is never handed out.
    stamps: AtomicU64,
    counts: Counts,
    /// Declared last: dropped (and the subscriber stopped) after everything it uses.
    _subscription: Option<Subscription>,
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
        )?
        .for_resource(config.resource.clone());
        // An answer can be on its way for up to the upstream timeout after its revocation's
        // event; twice that leaves room for scheduling (within sane bounds, whatever the
        // configured timeout).
        let recent_for = config
            .upstream_timeout
            .saturating_mul(2)
            .clamp(Duration::from_secs(1), Duration::from_secs(600));
        let feed = Arc::new(Shared::new(recent_for));
        let listener = feed.clone();
        let cache = cache::build(config.cache_capacity, move |key, value| {
            if let Some(info) = &value.info {
                listener.index.forget(key, value.stamp, info);
            }
        });
        let feed_counts = FeedCounts::register();
        let subscription = if config.feed {
            let settings = feed::Settings {
                tessera_url: &config.tessera_url,
                client_id: &config.client_id,
                client_secret: &config.client_secret,
                request_timeout: config.upstream_timeout,
                idle_timeout: config.feed_idle_timeout,
            };
            feed::start(&settings, cache.clone(), feed.clone(), feed_counts)?
        } else {
            None
        };
        Ok(ResourceServer(Arc::new(Inner {
            upstream: Batcher::new(introspector, config.introspect_batch),
            cache,
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            digester: Digester::random(),
            lifetimes: Lifetimes {
                ttl: config.cache_ttl,
                ttl_with_feed: config.cache_ttl_with_feed,
                negative_ttl: config.negative_ttl,
                negative_ttl_with_feed: config.negative_ttl_with_feed,
            },
            feed,
            stamps: AtomicU64::new(1),
            counts: Counts::register(),
            _subscription: subscription,
        })))
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.0.breaker.state()
    }

    /// Whether answers are being admitted with the feed's long TTL right now.
    pub fn feed_status(&self) -> FeedStatus {
        self.0.feed.status()
    }

    /// Authenticates a bearer token: the caller, or why not.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let inner = &*self.0;
        let key = inner.digester.digest(token);
        if let Some(cached) = inner.cache.get(&key).await {
            if !cached.expired_without_feed(|| inner.feed.coverage(), Instant::now) {
                let counter = if cached.info.is_some() {
                    &inner.counts.hit
                } else {
                    &inner.counts.negative_hit
                };
                counter.increment(1);
                return caller_from(cached);
            }
            // Admitted for the long TTL, and the feed that allowed it is gone: past the short
            // TTL, ask again. (Checked here rather than by invalidating entries when the feed
            // drops: a scan at the drop would miss the entries that cross their short TTL later,
            // while the feed is still down; this check costs one atomic load to an entry the
            // feed covers, and nothing to the others.)
            self.remove_admission(key, cached.stamp).await;
        }
        let entry = inner
            .cache
            .entry(key)
            .or_try_insert_with(self.load(token, key))
            .await
            .map_err(|shared| (*shared).clone())?;
        if entry.is_fresh() {
            inner.counts.miss.increment(1);
            inner.counts.entries.set(inner.cache.entry_count() as f64);
        } else {
            inner.counts.coalesced.increment(1);
        }
        let cached = entry.into_value();
        if let Some(info) = &cached.info {
            // A revocation whose event was handled after the load looked (and which may have
            // read the index before this answer was stored) is seen here.
            if inner.feed.recent.revokes(info, Instant::now()) {
                self.remove_admission(key, cached.stamp).await;
                return Err(AuthError::InvalidToken);
            }
        }
        caller_from(cached)
    }

    /// Removes the entry at `key` if it is still the admission `stamp`: of many requests that
    /// found one entry unusable, only the first removes it, and the answer another one has
    /// loaded since stays.
    async fn remove_admission(&self, key: Digest, stamp: u64) {
        self.0
            .cache
            .entry(key)
            .and_compute_with(|current| {
                let same = current.is_some_and(|entry| entry.value().stamp == stamp);
                std::future::ready(if same { Op::Remove } else { Op::Nop })
            })
            .await;
    }

    /// One call to Tessera, if the breaker allows it.
    async fn load(&self, token: &str, key: Digest) -> Result<Cached, AuthError> {
        let inner = &*self.0;
        let permit = match inner.breaker.admit(Instant::now()) {
            Admission::Call(permit) => permit,
            Admission::Refused { retry_after } => return Err(AuthError::Unavailable { retry_after }),
        };
        let started = Instant::now();
        let answer = inner.upstream.introspect(token).await;
        let done = Instant::now();
        inner.counts.upstream_duration.record(done - started);
        match answer {
            Ok(verdict) => {
                permit.succeeded(done);
                match verdict {
                    Verdict::Active(_) => inner.counts.upstream_active.increment(1),
                    Verdict::Inactive => inner.counts.upstream_inactive.increment(1),
                }
                let verdict = match verdict {
                    Verdict::Active(info) if inner.feed.recent.revokes(&info, Instant::now()) => {
                        tracing::debug!("an introspection answer older than a revocation event: inactive");
                        Verdict::Inactive
                    }
                    other => other,
                };
                // The epoch is read before the entry is stored: should the feed drop in between,
                // the entry is already marked as depending on it.
                let epoch = inner.feed.connected_epoch();
                let mut cached = cache::admit(verdict, cache::unix_ms(), Instant::now(), &inner.lifetimes, epoch);
                if let Some(info) = &cached.info {
                    cached.stamp = inner.stamps.fetch_add(1, Ordering::Relaxed);
                    inner.feed.index.insert(key, cached.stamp, info);
                }
                Ok(cached)
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

/// A cached answer as the request sees it. Expiry is the cache's job alone: `cache::admit` ends
/// an active entry by the token's `exp`, and the cache checks each entry's end on every read.
fn caller_from(cached: Cached) -> Result<Caller, AuthError> {
    cached.info.map(Caller).ok_or(AuthError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_config_hides_the_secret() {
        let shown = format!(
            "{:?}",
            ResourceServerConfig::new("http://127.0.0.1:4000", "api", "s3cr3t")
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("api"), "{shown}");
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    use actix_web::{web, App, HttpResponse, HttpServer};

    /// A stand-in for Tessera's introspection endpoint: answers 500 to the first `failures`
    /// calls, then says every token is active, each answer after `delay`. Counts the calls.
    async fn fake_tessera(failures: usize, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let server = HttpServer::new(move || {
            let calls = counted.clone();
            App::new().route(
                "/oauth/introspect",
                web::post().to(move || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        actix_rt::time::sleep(delay).await;
                        if n < failures {
                            HttpResponse::InternalServerError().finish()
                        } else {
                            HttpResponse::Ok().body(r#"{"active":true,"client_id":"c","scope":"read"}"#)
                        }
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        actix_rt::spawn(server.run());
        (base, calls)
    }

    fn resource_server(base: &str, breaker_failures: u32) -> ResourceServer {
        ResourceServer::new(&ResourceServerConfig {
            breaker_failures,
            ..ResourceServerConfig::new(base, "rs", "secret")
        })
        .unwrap()
    }

    #[actix_rt::test]
    async fn a_failed_call_is_shared_by_its_waiters_and_not_cached() {
        let (base, calls) = fake_tessera(1, Duration::from_millis(100)).await;
        let rs = resource_server(&base, 5);
        let answers = futures_util::future::join_all((0..10).map(|_| rs.authenticate("tsa_t"))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "ten waiters, one call");
        assert!(answers.iter().all(|a| matches!(a, Err(AuthError::Unavailable { .. }))));
        // The failure was not cached: the next request asks again, and succeeds.
        let caller = rs.authenticate("tsa_t").await.unwrap();
        assert_eq!(caller.client_id, "c");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(rs.breaker_state(), BreakerState::Closed);
    }

    #[actix_rt::test]
    async fn server_errors_open_the_breaker_and_an_open_breaker_makes_no_call() {
        let (base, calls) = fake_tessera(usize::MAX, Duration::ZERO).await;
        let rs = resource_server(&base, 2);
        for token in ["tsa_a", "tsa_b"] {
            assert!(matches!(
                rs.authenticate(token).await,
                Err(AuthError::Unavailable { .. })
            ));
        }
        assert_eq!(rs.breaker_state(), BreakerState::Open);
        let Err(AuthError::Unavailable { retry_after }) = rs.authenticate("tsa_c").await else {
            panic!("an open breaker refuses");
        };
        assert!(
            retry_after > Duration::from_secs(4),
            "about the whole open time is left: {retry_after:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
