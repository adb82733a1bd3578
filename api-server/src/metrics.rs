//! Metric names of the resource-server library and the demo API, defined once.
//!
//! The library only records through the `metrics` facade; the application installs the recorder
//! (the `api-server` binary installs a Prometheus one, see [`install`]). Several servers in one
//! process, as in the tests, share whichever recorder is installed.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Cache lookups by `result`: `hit`, `negative_hit` (a cached "inactive"), `miss` (this request
/// called Tessera) and `coalesced` (it waited for another request's call to Tessera).
pub const CACHE_LOOKUPS: &str = "api_introspection_cache_total";
/// Entries in the introspection cache.
pub const CACHE_ENTRIES: &str = "api_introspection_cache_entries";
/// Introspection calls to Tessera by `outcome`: `active`, `inactive`, or an error kind.
pub const UPSTREAM_CALLS: &str = "api_upstream_introspections_total";
/// Latency of introspection calls to Tessera, whatever their outcome.
pub const UPSTREAM_DURATION: &str = "api_upstream_duration_seconds";
/// The breaker's state: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "api_breaker_state";
/// Breaker transitions by the state entered (`to`).
pub const BREAKER_TRANSITIONS: &str = "api_breaker_transitions_total";
/// Requests refused by the bearer-token check, by `reason`: `missing`, `malformed`, `invalid`,
/// `insufficient_scope`, `unavailable`.
pub const AUTH_REJECTIONS: &str = "api_auth_rejections_total";
/// HTTP requests to the demo API by `route` and `status`.
pub const HTTP_REQUESTS: &str = "api_http_requests_total";
/// HTTP request latency of the demo API by `route`.
pub const HTTP_DURATION: &str = "api_http_request_duration_seconds";
/// Whether the revocation feed is connected: 1 while its stream is open (answers get the long
/// TTL), 0 otherwise (off, not advertised, or reconnecting).
pub const FEED_CONNECTED: &str = "api_feed_connected";
/// Revocation events received, by `type`: `token`, `grant`, `subject`, `client`, `reset` (an
/// unreadable event counts as a reset, since it is handled as one).
pub const FEED_EVENTS: &str = "api_feed_events_total";
/// Cache entries removed by revocation events (a reset counts every entry it dropped).
pub const FEED_EVICTIONS: &str = "api_feed_evictions_total";
/// Delay from a revocation (its `event_timestamp`, whole seconds) to its event's receipt here.
pub const FEED_LAG: &str = "api_feed_lag_seconds";
/// Attempts to open the feed's stream again after a stream ended or could not be opened.
pub const FEED_RECONNECTS: &str = "api_feed_reconnects_total";
/// Tokens carried by one introspection call to Tessera (1 for a single call).
pub const UPSTREAM_BATCH_SIZE: &str = "api_upstream_batch_size";

/// Every metric name, for the documentation and dashboard checks.
pub const ALL: &[&str] = &[
    CACHE_LOOKUPS,
    CACHE_ENTRIES,
    UPSTREAM_CALLS,
    UPSTREAM_DURATION,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    AUTH_REJECTIONS,
    HTTP_REQUESTS,
    HTTP_DURATION,
    FEED_CONNECTED,
    FEED_EVENTS,
    FEED_EVICTIONS,
    FEED_LAG,
    FEED_RECONNECTS,
    UPSTREAM_BATCH_SIZE,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The feed's lag is measured against a timestamp in whole seconds, so it reads between 0 and
/// about 1 s when all is well; the buckets reach far beyond, to show a feed that falls behind.
const LAG_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 50.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs a Prometheus recorder for this process and returns its handle, for binaries that
/// have none. A process that already installed one (Tessera's, in tests) passes its own handle
/// to the demo API instead.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // A full-name matcher takes precedence over a suffix one.
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is non-empty")
            .set_buckets_for_metric(Matcher::Full(FEED_LAG.into()), LAG_BUCKETS)
            .expect("the bucket list is non-empty")
            .set_buckets_for_metric(Matcher::Full(UPSTREAM_BATCH_SIZE.into()), BATCH_BUCKETS)
            .expect("the bucket list is non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("api-metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawning the metrics upkeep thread");
        describe();
        handle
    })
}

/// Help texts, for any recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(CACHE_LOOKUPS, "Introspection cache lookups by result");
    describe_gauge!(CACHE_ENTRIES, "Entries in the introspection cache");
    describe_counter!(UPSTREAM_CALLS, "Introspection calls to Tessera by outcome");
    describe_histogram!(
        UPSTREAM_BATCH_SIZE,
        "Tokens carried by one introspection call to Tessera (concurrent misses share calls)"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Latency of introspection calls to Tessera"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Introspection breaker state: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(BREAKER_TRANSITIONS, "Introspection breaker transitions by new state");
    describe_counter!(AUTH_REJECTIONS, "Requests refused by the bearer-token check, by reason");
    describe_counter!(HTTP_REQUESTS, "Demo API HTTP requests by route and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Demo API HTTP request latency by route");
    describe_gauge!(
        FEED_CONNECTED,
        "Revocation feed: 1 while its stream is open (long TTL), 0 otherwise"
    );
    describe_counter!(FEED_EVENTS, "Revocation events received, by type");
    describe_counter!(FEED_EVICTIONS, "Cache entries removed by revocation events");
    describe_histogram!(
        FEED_LAG,
        Unit::Seconds,
        "Delay from a revocation to the receipt of its event"
    );
    describe_counter!(
        FEED_RECONNECTS,
        "Attempts to reopen the revocation feed's stream after it ended or failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_metrics_are_on_the_page_before_the_feed_does_anything() {
        // The demo API's /metrics must show every name from the first scrape, feed or not.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            drop(crate::feed::FeedCounts::register());
        });
        let page = handle.render();
        for name in [FEED_CONNECTED, FEED_EVICTIONS, FEED_RECONNECTS] {
            assert!(page.contains(&format!("{name} 0")), "{name}:\n{page}");
        }
        assert!(page.contains(&format!("{FEED_LAG}_count 0")), "{page}");
        for kind in ["token", "grant", "subject", "client", "reset"] {
            let line = format!("{FEED_EVENTS}{{type=\"{kind}\"}} 0");
            assert!(page.contains(&line), "{line}:\n{page}");
        }
    }
}
