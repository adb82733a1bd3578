//! The subscriber to Tessera's revocation event feed: it keeps the SSE stream of signed
//! revocation events open and evicts the cached introspection answers each event names, so that
//! a revoked token stops working here within moments although answers are cached for minutes.
//!
//! Guarantees:
//! - the feed is found through discovery (`revocation_events_stream_endpoint` in
//!   `/.well-known/oauth-authorization-server`); a Tessera that does not advertise one, or cannot
//!   be reached, leaves the cache TTL-only, and discovery is retried with backoff in the
//!   background, so an API started before Tessera finds the feed later;
//! - credentials (HTTP Basic, as for introspection) are only sent below the configured
//!   `tessera_url`: an endpoint advertised under the issuer is reached below `tessera_url`, and
//!   one on another origin is refused;
//! - the feed counts as connected from the stream's `: ready` line (after a 200) until the
//!   stream ends, fails, answers anything else, or stays silent (not even a heartbeat) for the
//!   idle timeout; only while connected are answers admitted with the long TTL, and an entry
//!   admitted so falls back to its short TTL as soon as the feed stops covering it (see
//!   [`crate::cache::Cached::expired_without_feed`]);
//! - it reconnects with exponential backoff and jitter (100 ms doubling to 5 s), resuming with
//!   `Last-Event-ID` set to the last id seen, so no event is lost across a reconnection; when
//!   there is no id to resume from, the events in between cannot be replayed, and the
//!   connection starts a new epoch: entries admitted in the old one are no longer covered;
//! - on an event, the revocation is first recorded among the recent ones ([`recent`]), then
//!   every entry the index ([`index`]) says holds what it names is removed; a reset, or an event
//!   that cannot be read, removes every entry. The ordering, with the request path indexing an
//!   answer before the cache stores it and checking the recent revocations after, means an
//!   answer computed before a revocation is never served as active after the revocation's event
//!   has been handled;
//! - eviction is idempotent: the same revocation arriving twice evicts nothing more.
//!
//! Submodules: [`sse`] (the event-stream parser), [`event`] (decoding the SETs), [`index`] and
//! [`recent`].

pub mod event;
pub mod index;
pub mod recent;
pub mod sse;

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use self::event::{decode_set, FeedEvent, Revoked};
use self::index::{Index, Kind};
use self::recent::Recent;
use self::sse::{Item, Parser};
use crate::cache::Cache;

/// The first wait before reconnecting a stream, and the longest.
const STREAM_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// The first wait before asking discovery again, and the longest.
const DISCOVERY_BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));
/// A stream that stayed open this long resets the reconnection backoff: one that drops at once
/// again and again must not be reconnected every 100 ms.
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Largest discovery document read.
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// Where the feed stands, as `/health` and [`crate::ResourceServer::feed_status`] report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStatus {
    /// Turned off (`--no-feed`), or no async runtime to run it on.
    Off,
    /// Looking for the feed or reconnecting to it: answers get the short TTL.
    Disconnected,
    /// The stream is open: answers get the long TTL.
    Connected,
}

impl FeedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::Off => "off",
            FeedStatus::Disconnected => "disconnected",
            FeedStatus::Connected => "connected",
        }
    }
}

/// What the subscriber and the request path share.
pub(crate) struct Shared {
    /// The epoch the open stream covers, 0 while there is none. Read on every hit of an entry
    /// admitted under the feed: one atomic load, no lock.
    coverage: AtomicU64,
    /// A subscriber was started (the feed is not off).
    running: AtomicBool,
    pub(crate) index: Index,
    pub(crate) recent: Recent,
}

impl Shared {
    /// `recent_for`: how long a revocation is kept among the recent ones.
    pub(crate) fn new(recent_for: Duration) -> Shared {
        Shared {
            coverage: AtomicU64::new(0),
            running: AtomicBool::new(false),
            index: Index::new(),
            recent: Recent::new(recent_for),
        }
    }

    /// The covered epoch, 0 while disconnected.
    #[inline]
    pub(crate) fn coverage(&self) -> u64 {
        self.coverage.load(Ordering::Acquire)
    }

    /// The epoch to admit an answer under: `Some` while connected.
    pub(crate) fn connected_epoch(&self) -> Option<NonZeroU64> {
        NonZeroU64::new(self.coverage())
    }

    pub(crate) fn status(&self) -> FeedStatus {
        if self.coverage() != 0 {
            FeedStatus::Connected
        } else if self.running.load(Ordering::Relaxed) {
            FeedStatus::Disconnected
        } else {
            FeedStatus::Off
        }
    }
}

/// Metric handles, registered once at start whether the feed runs or not, so the names are on
/// `/metrics` from the first scrape.
pub(crate) struct FeedCounts {
    connected: Gauge,
    token: Counter,
    grant: Counter,
    subject: Counter,
    client: Counter,
    reset: Counter,
    evictions: Counter,
    lag: Histogram,
    reconnects: Counter,
}

impl FeedCounts {
    pub(crate) fn register() -> FeedCounts {
        use crate::metrics::*;
        let events = |kind: &'static str| metrics::counter!(FEED_EVENTS, "type" => kind);
        let connected = metrics::gauge!(FEED_CONNECTED);
        connected.set(0.0);
        FeedCounts {
            connected,
            token: events("token"),
            grant: events("grant"),
            subject: events("subject"),
            client: events("client"),
            reset: events("reset"),
            evictions: metrics::counter!(FEED_EVICTIONS),
            lag: metrics::histogram!(FEED_LAG),
            reconnects: metrics::counter!(FEED_RECONNECTS),
        }
    }

    fn events(&self, revoked: &Revoked) -> &Counter {
        match revoked {
            Revoked::Token(_) => &self.token,
            Revoked::Grant(_) => &self.grant,
            Revoked::Subject { .. } => &self.subject,
            Revoked::Client(_) => &self.client,
            Revoked::Reset => &self.reset,
        }
    }
}

/// What the subscriber needs from the configuration.
pub(crate) struct Settings<'a> {
    pub tessera_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    /// Limit on a discovery call and on connecting.
    pub request_timeout: Duration,
    /// Silence after which a stream counts as cut.
    pub idle_timeout: Duration,
}

/// The running subscriber: dropping it (with the last clone of the resource server) stops it.
pub(crate) struct Subscription(tokio::task::JoinHandle<()>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the subscriber on the current tokio runtime (actix-web's, in a server). Without one
/// there is nothing to run it on: the feed stays off, with a warning.
pub(crate) fn start(
    settings: &Settings<'_>,
    cache: Cache,
    shared: Arc<Shared>,
    counts: FeedCounts,
) -> Result<Option<Subscription>, String> {
    let tessera_url = settings.tessera_url.trim_end_matches('/').to_owned();
    let base = reqwest::Url::parse(&tessera_url).map_err(|e| format!("tessera url {tessera_url:?}: {e}"))?;
    let http = reqwest::Client::builder()
        // No overall timeout: the stream is meant to stay open. Silence is caught by the idle
        // timeout instead.
        .connect_timeout(settings.request_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("building the feed's HTTP client: {e}"))?;
    let subscriber = Subscriber {
        http,
        base,
        tessera_url,
        authorization: crate::introspect::basic_authorization(settings.client_id, settings.client_secret)?,
        request_timeout: settings.request_timeout,
        idle_timeout: settings.idle_timeout,
        cache,
        shared: shared.clone(),
        counts,
        resume: None,
        epoch: 0,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime to run the revocation feed on: answers are cached for the short TTL only");
        return Ok(None);
    };
    shared.running.store(true, Ordering::Relaxed);
    Ok(Some(Subscription(runtime.spawn(subscriber.run()))))
}

/// The feed as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoint: reqwest::Url,
    /// Tessera's issuer: user revocations of another issuer are not about our tokens.
    issuer: String,
}

#[derive(Deserialize)]
struct Discovery {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    revocation_events_stream_endpoint: Option<String>,
}

/// How a stream ended.
#[derive(Debug)]
enum Ended {
    /// The endpoint answered 404: ask discovery again.
    Gone,
    /// 429: wait this long (at least).
    Wait(Duration),
    /// It could not be opened, or was open and dropped (`opened_for`: since its `: ready`).
    Dropped { opened_for: Option<Duration>, why: String },
}

struct Subscriber {
    http: reqwest::Client,
    base: reqwest::Url,
    /// `base` as text, without a trailing slash.
    tessera_url: String,
    authorization: HeaderValue,
    request_timeout: Duration,
    idle_timeout: Duration,
    cache: Cache,
    shared: Arc<Shared>,
    counts: FeedCounts,
    /// The last event id seen, to resume after.
    resume: Option<u64>,
    /// Bumped whenever a stream starts with no id to resume from.
    epoch: u64,
}

impl Subscriber {
    async fn run(mut self) {
        let mut wait = Backoff::new(DISCOVERY_BACKOFF);
        let mut said = None::<String>;
        loop {
            let found = self.discover().await;
            // Said once per change, not at every retry.
            let news = match &found {
                Ok(Some(t)) => format!("found {}", t.endpoint),
                Ok(None) => "none".to_owned(),
                Err(e) => e.clone(),
            };
            if said.as_ref() != Some(&news) {
                match &found {
                    Ok(Some(t)) => tracing::info!(endpoint = %t.endpoint, "revocation feed advertised"),
                    Ok(None) => {
                        tracing::info!("Tessera advertises no revocation feed: answers are cached for the short TTL")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation feed discovery failed; retrying in the background")
                    }
                }
                said = Some(news);
            }
            if let Ok(Some(target)) = found {
                if self.follow(&target).await {
                    wait.reset();
                    said = None;
                }
            }
            tokio::time::sleep(wait.next()).await;
        }
    }

    /// Streams from `target` until its endpoint is gone; true when a stream was ever open.
    async fn follow(&mut self, target: &Target) -> bool {
        let mut wait = Backoff::new(STREAM_BACKOFF);
        let mut opened_any = false;
        let mut failures = 0u32;
        loop {
            let ended = self.stream(target).await;
            let was_connected = self.shared.coverage() != 0;
            self.disconnect();
            let pause = match ended {
                Ended::Gone => {
                    tracing::warn!(endpoint = %target.endpoint, "revocation feed endpoint gone (404): asking discovery again");
                    return opened_any;
                }
                Ended::Wait(d) => {
                    tracing::warn!(retry_after_ms = d.as_millis() as u64, "revocation feed rate-limited");
                    d.max(wait.next())
                }
                Ended::Dropped { opened_for, why } => {
                    if let Some(up) = opened_for {
                        opened_any = true;
                        failures = 0;
                        if up >= STABLE_AFTER {
                            wait.reset();
                        }
                    }
                    failures += 1;
                    if was_connected || failures == 1 {
                        tracing::warn!(reason = %why, "revocation feed disconnected: short TTL until it is back");
                    } else {
                        tracing::debug!(reason = %why, "revocation feed still unavailable");
                    }
                    wait.next()
                }
            };
            tokio::time::sleep(pause).await;
            self.counts.reconnects.increment(1);
        }
    }

    fn connect(&self) {
        self.shared.coverage.store(self.epoch.max(1), Ordering::Release);
        self.counts.connected.set(1.0);
        tracing::info!(resumed_after = ?self.resume, "revocation feed connected");
    }

    fn disconnect(&self) {
        self.shared.coverage.store(0, Ordering::Release);
        self.counts.connected.set(0.0);
    }

    async fn discover(&self) -> Result<Option<Target>, String> {
        let url = format!("{}/.well-known/oauth-authorization-server", self.tessera_url);
        let mut response = self
            .http
            .get(&url)
            .header(ACCEPT, "application/json")
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| format!("discovery: {}", e.without_url()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("discovery answered HTTP {}", response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = tokio::time::timeout(self.request_timeout, response.chunk())
            .await
            .map_err(|_| "discovery timed out".to_owned())?
            .map_err(|e| format!("discovery: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_DISCOVERY_BYTES {
                return Err("discovery document too large".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        parse_discovery(&body, &self.base)
    }

    /// One stream, from the request to its end.
    async fn stream(&mut self, target: &Target) -> Ended {
        let dropped = |why: String| Ended::Dropped { opened_for: None, why };
        if self.resume.is_none() {
            // Nothing replays what happened since the last stream: a new epoch.
            self.epoch += 1;
        }
        let mut request = self
            .http
            .get(target.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = self.resume {
            request = request.header("Last-Event-ID", id);
        }
        let mut response = match tokio::time::timeout(self.request_timeout.max(self.idle_timeout), request.send()).await
        {
            Err(_) => return dropped("no answer to the stream request in time".into()),
            Ok(Err(e)) => return dropped(e.without_url().to_string()),
            Ok(Ok(r)) => r,
        };
        match response.status().as_u16() {
            200 => {}
            404 => return Ended::Gone,
            429 => return Ended::Wait(retry_after(response.headers().get(RETRY_AFTER))),
            401 | 403 => return dropped("the feed refused this resource server's credentials".into()),
            other => return dropped(format!("HTTP {other}")),
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if !is_sse {
            return dropped("the feed's answer is not text/event-stream".into());
        }
        let mut parser = Parser::new();
        let mut items = Vec::new();
        let mut opened = None::<Instant>;
        let why = loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, response.chunk()).await {
                Err(_) => break format!("nothing received for {} ms", self.idle_timeout.as_millis()),
                Ok(Err(e)) => break e.without_url().to_string(),
                Ok(Ok(None)) => break "the stream ended".to_owned(),
                Ok(Ok(Some(chunk))) => chunk,
            };
            if let Err(e) = parser.feed(&chunk, &mut items) {
                break e.to_string();
            }
            for item in items.drain(..) {
                match item {
                    Item::Comment(text) if opened.is_none() && text.trim() == "ready" => {
                        opened = Some(Instant::now());
                        self.connect();
                    }
                    Item::Comment(_) => {}
                    Item::Event(e) => {
                        handle(
                            &self.cache,
                            &self.shared,
                            &self.counts,
                            &e.event,
                            &e.data,
                            &target.issuer,
                        )
                        .await;
                    }
                }
            }
            // Every event up to this id has been handled.
            if let Some(id) = parser.last_event_id().and_then(|id| id.trim().parse::<u64>().ok()) {
                self.resume = Some(id);
            }
        };
        Ended::Dropped {
            opened_for: opened.map(|t| t.elapsed()),
            why,
        }
    }
}

/// The feed described by a discovery document, rebased below `base` (see the module's
/// guarantees); `Ok(None)` when the document advertises none.
fn parse_discovery(body: &[u8], base: &reqwest::Url) -> Result<Option<Target>, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("discovery document: {e}"))?;
    if !doc.is_object() {
        return Err("the discovery document is not a JSON object".to_owned());
    }
    let doc: Discovery = serde_json::from_value(doc).map_err(|e| format!("discovery document: {e}"))?;
    let Some(advertised) = doc.revocation_events_stream_endpoint else {
        return Ok(None);
    };
    let base_text = base.as_str().trim_end_matches('/');
    let issuer = doc.issuer.unwrap_or_else(|| base_text.to_owned());
    let below_issuer = advertised
        .strip_prefix(issuer.trim_end_matches('/'))
        .filter(|rest| rest.starts_with('/'));
    let endpoint = match below_issuer {
        Some(rest) => reqwest::Url::parse(&format!("{base_text}{rest}")),
        None => reqwest::Url::parse(&advertised),
    }
    .map_err(|e| format!("revocation_events_stream_endpoint: {e}"))?;
    if endpoint.origin() != base.origin() {
        return Err(format!(
            "revocation_events_stream_endpoint {advertised:?} is neither below the issuer nor on tessera_url's origin: not sending credentials there"
        ));
    }
    Ok(Some(Target { endpoint, issuer }))
}

/// What one SSE event does. Events other than `revocation` and `reset` are not for this
/// subscriber; an event of a type it does not know is skipped; any other event it cannot read
/// drops the whole cache, since it revoked something and what is unknown.
async fn handle(cache: &Cache, shared: &Shared, counts: &FeedCounts, name: &str, data: &str, issuer: &str) {
    if name != "revocation" && name != "reset" {
        tracing::debug!(event = name, "revocation feed: event of another kind skipped");
        return;
    }
    let event = match decode_set(data) {
        Ok(event) if name == "reset" && event.revoked != Revoked::Reset => {
            tracing::warn!("revocation feed: a reset event whose SET is not a reset; resetting");
            FeedEvent {
                revoked: Revoked::Reset,
                event_timestamp: event.event_timestamp,
            }
        }
        Ok(event) => event,
        Err(e) if e.is_unknown_type() && name != "reset" => {
            tracing::debug!(error = %e, "revocation feed: event type not known here, skipped");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "revocation feed: unreadable event; dropping every cached answer to be safe");
            FeedEvent {
                revoked: Revoked::Reset,
                event_timestamp: None,
            }
        }
    };
    apply(cache, shared, counts, &event, issuer).await;
}

/// Applies one decoded event; returns how many entries it removed.
pub(crate) async fn apply(cache: &Cache, shared: &Shared, counts: &FeedCounts, event: &FeedEvent, issuer: &str) -> u64 {
    let now_ms = crate::cache::unix_ms();
    counts.events(&event.revoked).increment(1);
    if let Some(ts) = event.event_timestamp {
        counts.lag.record((now_ms as f64 / 1000.0 - ts as f64).max(0.0));
    }
    let (kind, id) = match &event.revoked {
        Revoked::Token(jti) => (Kind::Jti, jti),
        Revoked::Grant(grant) => (Kind::Grant, grant),
        Revoked::Client(client) => (Kind::Client, client),
        Revoked::Subject { iss, sub } if iss.trim_end_matches('/') == issuer.trim_end_matches('/') => (Kind::Sub, sub),
        Revoked::Subject { .. } => {
            tracing::debug!("revocation feed: a user of another issuer, skipped");
            return 0;
        }
        Revoked::Reset => {
            let n = cache.entry_count();
            cache.invalidate_all();
            counts.evictions.increment(n);
            tracing::info!(entries = n, "revocation feed reset: every cached answer dropped");
            return n;
        }
    };
    // Recorded before the index is read: an answer indexed too late to be found below is then
    // caught by the request path's check of the recent revocations.
    let event_timestamp = event.event_timestamp.unwrap_or(now_ms / 1000);
    shared.recent.record(kind, id, event_timestamp, Instant::now());
    let mut evicted = 0;
    for key in shared.index.holders(kind, id) {
        if cache.remove(&key).await.is_some() {
            evicted += 1;
        }
    }
    counts.evictions.increment(evicted);
    tracing::debug!(kind = event.revoked.label(), evicted, "revocation feed event applied");
    evicted
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Tessera), at most
/// [`MAX_RETRY_AFTER`]; a missing or unreadable one waits one second.
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter: each wait is drawn from the upper half of a window that
/// doubles from `first` up to `max`, so subscribers restarted together do not reconnect in step.
struct Backoff {
    first: Duration,
    max: Duration,
    window: Duration,
}

impl Backoff {
    fn new((first, max): (Duration, Duration)) -> Backoff {
        Backoff {
            first,
            max,
            window: first,
        }
    }

    fn next(&mut self) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(self.max);
        let half = window / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    fn reset(&mut self) {
        self.window = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{self, Cached};
    use crate::feed::index::tests::info;
    use crate::introspect::TokenInfo;

    const ISSUER: &str = "http://127.0.0.1:4000";

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn discovery_gives_the_endpoint_below_tessera_url() {
        let base = url("http://10.0.0.5:4000");
        let doc = br#"{"issuer":"https://auth.example","revocation_events_stream_endpoint":"https://auth.example/oauth/revocations/stream"}"#;
        let t = parse_discovery(doc, &base).unwrap().unwrap();
        assert_eq!(t.endpoint.as_str(), "http://10.0.0.5:4000/oauth/revocations/stream");
        assert_eq!(t.issuer, "https://auth.example");
        // On tessera_url's own origin, as advertised.
        let doc =
            br#"{"issuer":"https://auth.example","revocation_events_stream_endpoint":"http://10.0.0.5:4000/feed"}"#;
        assert_eq!(
            parse_discovery(doc, &base).unwrap().unwrap().endpoint.as_str(),
            "http://10.0.0.5:4000/feed"
        );
        // No issuer: tessera_url is the issuer.
        let doc = br#"{"revocation_events_stream_endpoint":"http://10.0.0.5:4000/s"}"#;
        assert_eq!(
            parse_discovery(doc, &base).unwrap().unwrap().issuer,
            "http://10.0.0.5:4000"
        );
    }

    #[test]
    fn discovery_without_the_member_is_no_feed_and_elsewhere_is_refused() {
        let base = url("http://127.0.0.1:4000");
        assert_eq!(
            parse_discovery(br#"{"issuer":"http://127.0.0.1:4000"}"#, &base),
            Ok(None)
        );
        let elsewhere =
            br#"{"issuer":"http://127.0.0.1:4000","revocation_events_stream_endpoint":"http://evil.example/s"}"#;
        assert!(parse_discovery(elsewhere, &base).is_err());
        // A prefix of the issuer that is not a path below it does not count.
        let tricky =
            br#"{"issuer":"http://127.0.0.1:4000","revocation_events_stream_endpoint":"http://127.0.0.1:40001/s"}"#;
        assert!(parse_discovery(tricky, &base).is_err());
        for garbage in [
            &b"<html>"[..],
            b"[]",
            br#"{"issuer":7}"#,
            br#"{"revocation_events_stream_endpoint":"::"}"#,
        ] {
            assert!(parse_discovery(garbage, &base).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(STREAM_BACKOFF);
        let windows = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000];
        for w in windows {
            let d = b.next();
            let w = Duration::from_millis(w);
            assert!(d >= w / 2 && d <= w, "{d:?} outside the upper half of {w:?}");
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_bounded() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&h("3"))), Duration::from_secs(3));
        assert_eq!(retry_after(Some(&h("86400"))), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(Some(&h("Wed, 21 Oct 2015 07:28:00 GMT"))),
            Duration::from_secs(1)
        );
        assert_eq!(retry_after(None), Duration::from_secs(1));
    }

    /// A cache wired to an index as the resource server wires them, holding `infos`.
    async fn filled(infos: &[TokenInfo]) -> (Cache, Arc<Shared>) {
        let shared = Arc::new(Shared::new(Duration::from_secs(4)));
        let listener = shared.clone();
        let cache = cache::build(1000, move |key, value| {
            if let Some(info) = &value.info {
                listener.index.forget(key, value.stamp, info);
            }
        });
        for (n, info) in infos.iter().enumerate() {
            let key = [n as u8; 32];
            let stamp = n as u64 + 1;
            shared.index.insert(key, stamp, info);
            let cached = Cached {
                info: Some(Arc::new(info.clone())),
                ttl: Duration::from_secs(300),
                feed: None,
                stamp,
            };
            cache.insert(key, cached).await;
        }
        (cache, shared)
    }

    async fn left(cache: &Cache, n: usize) -> Vec<u8> {
        let mut kept = Vec::new();
        for k in 0..n as u8 {
            if cache.get(&[k; 32]).await.is_some() {
                kept.push(k);
            }
        }
        kept
    }

    fn tokens() -> Vec<TokenInfo> {
        vec![
            info("j-0", Some("g-1"), Some("u-1"), "c-1"),
            info("j-1", Some("g-1"), Some("u-1"), "c-1"),
            info("j-2", Some("g-2"), Some("u-2"), "c-1"),
            info("j-3", None, None, "c-2"),
            info("j-4", Some("g-3"), Some("u-1"), "c-2"),
        ]
    }

    fn event(revoked: Revoked) -> FeedEvent {
        FeedEvent {
            revoked,
            event_timestamp: Some(crate::cache::unix_ms() / 1000),
        }
    }

    #[actix_rt::test]
    async fn each_event_evicts_exactly_the_entries_it_names() {
        let counts = FeedCounts::register();
        let cases: Vec<(Revoked, Vec<u8>)> = vec![
            (Revoked::Token("j-2".into()), vec![0, 1, 3, 4]),
            (Revoked::Grant("g-1".into()), vec![2, 3, 4]),
            (
                Revoked::Subject {
                    iss: ISSUER.into(),
                    sub: "u-1".into(),
                },
                vec![2, 3],
            ),
            (
                Revoked::Subject {
                    iss: format!("{ISSUER}/"),
                    sub: "u-2".into(),
                },
                vec![0, 1, 3, 4],
            ),
            (
                Revoked::Subject {
                    iss: "http://other.example".into(),
                    sub: "u-1".into(),
                },
                vec![0, 1, 2, 3, 4],
            ),
            (Revoked::Client("c-2".into()), vec![0, 1, 2]),
            (Revoked::Token("unknown".into()), vec![0, 1, 2, 3, 4]),
            (Revoked::Reset, vec![]),
        ];
        for (revoked, kept) in cases {
            let (cache, shared) = filled(&tokens()).await;
            let evicted = apply(&cache, &shared, &counts, &event(revoked.clone()), ISSUER).await;
            assert_eq!(left(&cache, 5).await, kept, "{revoked:?}");
            if revoked != Revoked::Reset {
                assert_eq!(evicted as usize, 5 - kept.len(), "{revoked:?}");
                // The index forgot the evicted entries, and nothing else.
                cache.run_pending_tasks().await;
                for k in 0..5u8 {
                    let held = shared.index.holders(Kind::Jti, &format!("j-{k}"));
                    assert_eq!(held.is_empty(), !kept.contains(&k), "{revoked:?}: index of {k}");
                }
                // Again: nothing more goes.
                assert_eq!(
                    apply(&cache, &shared, &counts, &event(revoked.clone()), ISSUER).await,
                    0
                );
            }
        }
    }

    #[actix_rt::test]
    async fn an_applied_event_is_remembered_for_answers_still_on_their_way() {
        let counts = FeedCounts::register();
        let (cache, shared) = filled(&[]).await;
        apply(&cache, &shared, &counts, &event(Revoked::Grant("g-1".into())), ISSUER).await;
        let late = info("j-9", Some("g-1"), None, "c-1");
        assert!(shared.recent.revokes(&late, Instant::now()));
        apply(
            &cache,
            &shared,
            &counts,
            &event(Revoked::Subject {
                iss: "http://other.example".into(),
                sub: "u-1".into(),
            }),
            ISSUER,
        )
        .await;
        assert!(!shared
            .recent
            .revokes(&info("j-8", None, Some("u-1"), "c-9"), Instant::now()));
    }

    #[actix_rt::test]
    async fn unreadable_revocations_drop_everything_and_other_events_nothing() {
        let counts = FeedCounts::register();
        let all = vec![0, 1, 2, 3, 4];
        for (name, data, kept) in [
            ("revocation", "garbage".to_owned(), vec![]),
            ("reset", "garbage".to_owned(), vec![]),
            (
                "revocation",
                event::tests::set(&serde_json::json!({"events": {"urn:example:new": {}}})),
                all.clone(),
            ),
            ("message", "garbage".to_owned(), all.clone()),
            ("heartbeat", String::new(), all.clone()),
        ] {
            let (cache, shared) = filled(&tokens()).await;
            handle(&cache, &shared, &counts, name, &data, ISSUER).await;
            assert_eq!(left(&cache, 5).await, kept, "{name} {data}");
        }
    }
}
