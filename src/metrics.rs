//! Prometheus metrics: every metric name Tessera exposes is defined here, once.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder), installed on first
//! use; several servers in one process, as in the tests, share it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "tessera_http_requests_total";
pub const HTTP_DURATION: &str = "tessera_http_request_duration_seconds";
pub const INTROSPECTIONS: &str = "tessera_introspections_total";
pub const TOKENS_ISSUED: &str = "tessera_tokens_issued_total";
pub const TOKENS_REVOKED: &str = "tessera_tokens_revoked_total";
pub const TOKENS_SWEPT: &str = "tessera_tokens_swept_total";
pub const CLIENT_AUTH_FAILURES: &str = "tessera_client_auth_failures_total";
pub const SHARD_MAILBOX_DEPTH: &str = "tessera_shard_mailbox_depth";
pub const FLUSH_BATCH_SIZE: &str = "tessera_flush_batch_size";
pub const FLUSH_DURATION: &str = "tessera_flush_duration_seconds";
pub const INTROSPECTION_BATCH_SIZE: &str = "tessera_introspection_batch_size";
pub const TOKENS_LIVE: &str = "tessera_tokens_live";
pub const CODES_ISSUED: &str = "tessera_authorization_codes_issued_total";
pub const SIGN_INS: &str = "tessera_sign_ins_total";
pub const FAMILIES_REVOKED: &str = "tessera_token_families_revoked_total";
pub const AUDIT_DROPPED: &str = "tessera_audit_events_dropped_total";
pub const RATE_LIMITED: &str = "tessera_rate_limited_total";
pub const FEED_STREAMS: &str = "tessera_feed_streams";
pub const FEED_EVENTS: &str = "tessera_feed_events_sent_total";

/// Every metric name, for documentation checks and dashboards.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    INTROSPECTIONS,
    TOKENS_ISSUED,
    TOKENS_REVOKED,
    TOKENS_SWEPT,
    CLIENT_AUTH_FAILURES,
    SHARD_MAILBOX_DEPTH,
    FLUSH_BATCH_SIZE,
    FLUSH_DURATION,
    INTROSPECTION_BATCH_SIZE,
    TOKENS_LIVE,
    CODES_ISSUED,
    SIGN_INS,
    FAMILIES_REVOKED,
    AUDIT_DROPPED,
    RATE_LIMITED,
    FEED_STREAMS,
    FEED_EVENTS,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder if no one has, and returns the handle that renders it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS))
            .expect("bucket lists are non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        // Histograms accumulate between renders; upkeep bounds that memory when nobody scrapes.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("tessera-metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawning the metrics upkeep thread");
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency by route");
    describe_counter!(INTROSPECTIONS, "Introspections by result (active, inactive)");
    describe_counter!(TOKENS_ISSUED, "Tokens issued by grant type");
    describe_counter!(TOKENS_REVOKED, "Tokens revoked");
    describe_counter!(TOKENS_SWEPT, "Expired token records removed by the sweeper");
    describe_counter!(CLIENT_AUTH_FAILURES, "Failed client authentications");
    describe_gauge!(SHARD_MAILBOX_DEPTH, "Messages sent to a shard and not yet handled");
    describe_histogram!(FLUSH_BATCH_SIZE, "Durable writes covered by one group-commit flush");
    describe_histogram!(FLUSH_DURATION, Unit::Seconds, "Duration of one group-commit flush");
    describe_histogram!(
        INTROSPECTION_BATCH_SIZE,
        "Introspections carried by one message from an HTTP worker to a shard"
    );
    describe_gauge!(TOKENS_LIVE, "Tokens a shard holds, live or expired and not yet swept");
    describe_counter!(CODES_ISSUED, "Authorization codes issued");
    describe_counter!(SIGN_INS, "Sign-in attempts by result (success, failure, locked)");
    describe_counter!(
        FAMILIES_REVOKED,
        "Token families revoked, by reason (code_replay, refresh_reuse, revocation)"
    );
    describe_counter!(
        AUDIT_DROPPED,
        "Audit events dropped because the audit log writer fell behind"
    );
    describe_gauge!(FEED_STREAMS, "Open revocation feed streams");
    describe_counter!(
        FEED_EVENTS,
        "Revocation events sent to subscribers, by how (stream, poll)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 by endpoint and reason (client_auth_failures, client_rate, address_rate)"
    );
}

/// The revocation feed's metrics, registered when the feed is made so that they show at zero.
#[derive(Clone)]
pub struct FeedMetrics {
    pub streams: Gauge,
    pub streamed: Counter,
    pub polled: Counter,
}

impl FeedMetrics {
    pub fn register() -> Self {
        let streams = metrics::gauge!(FEED_STREAMS);
        streams.set(0.0);
        let sent = |via: &'static str| {
            let c = metrics::counter!(FEED_EVENTS, "via" => via);
            c.increment(0);
            c
        };
        FeedMetrics {
            streams,
            streamed: sent("stream"),
            polled: sent("poll"),
        }
    }
}

/// Handles for the metrics on the introspection path, registered once so that recording is an
/// atomic add rather than a registry lookup.
#[derive(Clone)]
pub struct HotCounters {
    pub introspect_active: Counter,
    pub introspect_inactive: Counter,
    pub auth_failures: Counter,
}

impl HotCounters {
    pub fn new() -> Self {
        Self {
            introspect_active: counter!(INTROSPECTIONS, "result" => "active"),
            introspect_inactive: counter!(INTROSPECTIONS, "result" => "inactive"),
            auth_failures: counter!(CLIENT_AUTH_FAILURES),
        }
    }
}

impl Default for HotCounters {
    fn default() -> Self {
        Self::new()
    }
}

pub fn mailbox_gauge(shard: usize) -> Gauge {
    gauge!(SHARD_MAILBOX_DEPTH, "shard" => shard.to_string())
}

pub fn live_tokens_gauge(shard: usize) -> Gauge {
    gauge!(TOKENS_LIVE, "shard" => shard.to_string())
}

pub fn introspection_batch_histogram() -> Histogram {
    histogram!(INTROSPECTION_BATCH_SIZE)
}

pub fn token_issued(grant: &'static str) {
    counter!(TOKENS_ISSUED, "grant_type" => grant).increment(1);
}

pub fn code_issued() {
    counter!(CODES_ISSUED).increment(1);
}

/// `result` is `success`, `failure` (the password was checked and wrong), `locked`, or `busy`
/// (no password check was free in time; the attempt was not checked).
pub fn sign_in(result: &'static str) {
    counter!(SIGN_INS, "result" => result).increment(1);
}

/// `reason` is `code_replay`, `refresh_reuse` or `revocation`.
pub fn family_revoked(reason: &'static str) {
    counter!(FAMILIES_REVOKED, "reason" => reason).increment(1);
}

/// A request to `endpoint` (a route pattern) refused under a limit; `reason` is
/// `client_auth_failures`, `client_rate` or `address_rate`. Only refusals are counted, so the
/// registry lookup is paid by requests that do no other work.
pub fn rate_limited(endpoint: &'static str, reason: &'static str) {
    counter!(RATE_LIMITED, "endpoint" => endpoint, "reason" => reason).increment(1);
}

pub fn tokens_revoked(n: usize) {
    counter!(TOKENS_REVOKED).increment(n as u64);
}

pub fn tokens_swept(n: usize) {
    counter!(TOKENS_SWEPT).increment(n as u64);
}

pub fn flush_observed(batch: usize, took: Duration) {
    histogram!(FLUSH_BATCH_SIZE).record(batch as f64);
    histogram!(FLUSH_DURATION).record(took.as_secs_f64());
}

/// Status labels: the codes Tessera answers with, one label each, and a class label for any
/// other code, so that the label set stays bounded.
const STATUS_LABELS: [&str; 16] = [
    "200", "201", "204", "400", "401", "404", "405", "413", "429", "500", "503", "1xx", "2xx", "3xx", "4xx", "5xx",
];

fn status_index(code: u16) -> usize {
    STATUS_LABELS[..11]
        .iter()
        .position(|l| l.parse() == Ok(code))
        .unwrap_or(11 + usize::from(code / 100).clamp(1, 5) - 1)
}

/// The HTTP metrics of a fixed set of routes, with their handles registered ahead, so that
/// recording a request is an atomic add and a histogram push, with no registry lookup. A
/// lookup per request (hashing the name and labels, allocating the key) cost 0.5–2 µs of the
/// 15 µs of server CPU an introspection takes (BENCHMARKS.md).
pub struct HttpMetrics {
    routes: &'static [&'static str],
    durations: Vec<Histogram>,
    /// Per route and status label; registered on first use, so `/metrics` lists only the
    /// pairs that occurred.
    requests: Vec<[OnceLock<Counter>; STATUS_LABELS.len()]>,
}

impl HttpMetrics {
    /// `routes` are the route labels; requests are recorded by index into them.
    pub fn new(routes: &'static [&'static str]) -> Self {
        install();
        Self {
            routes,
            durations: routes
                .iter()
                .map(|&r| histogram!(HTTP_DURATION, "route" => r))
                .collect(),
            requests: routes.iter().map(|_| Default::default()).collect(),
        }
    }

    /// Records one request to route `route` (an index into the routes given to `new`).
    pub fn observe(&self, route: usize, status: u16, took: Duration) {
        let s = status_index(status);
        self.requests[route][s]
            .get_or_init(|| counter!(HTTP_REQUESTS, "route" => self.routes[route], "status" => STATUS_LABELS[s]))
            .increment(1);
        self.durations[route].record(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_their_label_or_their_class() {
        let label = |code| STATUS_LABELS[status_index(code)];
        assert_eq!(label(200), "200");
        assert_eq!(label(503), "503");
        assert_eq!(label(302), "3xx");
        assert_eq!(label(429), "429");
        assert_eq!(label(418), "4xx");
        assert_eq!(label(599), "5xx");
        assert_eq!(label(101), "1xx");
    }
}
