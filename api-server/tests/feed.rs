//! The resource server against a fake Tessera that serves discovery, introspection and a
//! revocation event stream the test controls: revoked tokens stop working within moments while
//! answers are cached for minutes, a dropped feed falls back to the short TTL, reconnection
//! resumes after the last event seen, a reset empties the cache, and answers racing an event
//! are caught.
//!
//! Waits are polls with generous limits (this machine is shared): a limit is where a test gives
//! up, never what it measures.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use serde_json::{json, Value};
use tessera_api::{AuthError, FeedStatus, ResourceServer, ResourceServerConfig};
use tokio::sync::{mpsc, Notify};

const CLIENT: &str = "rs";
const SECRET: &str = "s3cret";
const TOKEN_REVOKED: &str = "urn:tessera:secevent:token-revoked";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const FEED_RESET: &str = "urn:tessera:secevent:feed-reset";
/// Where a test gives up waiting for something that takes milliseconds when all is well.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    base: OnceLock<String>,
    advertise: AtomicBool,
    refuse_streams: AtomicBool,
    discoveries: AtomicUsize,
    /// Token → the introspection answer Tessera would give now.
    answers: Mutex<HashMap<String, Value>>,
    calls: Mutex<HashMap<String, usize>>,
    /// Tokens whose answers are held until released (computed when asked, sent later).
    held: Mutex<HashMap<String, Arc<Notify>>>,
    /// The `Last-Event-ID` of each stream request, in order.
    streams: Mutex<Vec<Option<String>>>,
    /// The open stream, if any.
    stream: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
}

struct FakeTessera {
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeTessera {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn authorized(req: &HttpRequest) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"))
    );
    req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn discovery(state: web::Data<State>) -> HttpResponse {
    state.discoveries.fetch_add(1, Ordering::SeqCst);
    let base = state.base.get().cloned().unwrap_or_default();
    let mut doc = json!({ "issuer": base, "introspection_endpoint": format!("{base}/oauth/introspect") });
    if state.advertise.load(Ordering::SeqCst) {
        doc["revocation_events_stream_endpoint"] = json!(format!("{base}/oauth/revocations/stream"));
    }
    HttpResponse::Ok().json(doc)
}

async fn introspect(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    state: web::Data<State>,
) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let token = form.get("token").cloned().unwrap_or_default();
    *state.calls.lock().unwrap().entry(token.clone()).or_default() += 1;
    // The answer is computed now, whatever happens while it is held.
    let answer = state
        .answers
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or(json!({"active": false}));
    let hold = state.held.lock().unwrap().get(&token).cloned();
    if let Some(release) = hold {
        release.notified().await;
    }
    HttpResponse::Ok().json(answer)
}

async fn stream(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.streams.lock().unwrap().push(last);
    if state.refuse_streams.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let _ = tx.send(Bytes::from_static(b": ready\n\n"));
    // Replaces (and so closes) an older stream.
    *state.stream.lock().unwrap() = Some(tx);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .streaming(body)
}

impl FakeTessera {
    async fn start(advertise: bool) -> FakeTessera {
        let state = Arc::new(State::default());
        state.advertise.store(advertise, Ordering::SeqCst);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/.well-known/oauth-authorization-server", web::get().to(discovery))
                .route("/oauth/introspect", web::post().to(introspect))
                .route("/oauth/revocations/stream", web::get().to(stream))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        state.base.set(base).unwrap();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeTessera { state, handle }
    }

    fn base(&self) -> &str {
        self.state.base.get().unwrap()
    }

    /// An active user token with these identifiers, issued now and valid for an hour.
    fn user_token(&self, token: &str, jti: &str, grant: &str, sub: &str, client: &str) {
        let now = unix_now();
        self.answer(
            token,
            json!({"active": true, "client_id": client, "sub": sub, "scope": "read", "token_type": "Bearer",
                   "iat": now, "exp": now + 3600, "jti": jti, "grant_id": grant,
                   "cache_max_age": 300, "cache_max_age_with_feed": 3600}),
        );
    }

    fn answer(&self, token: &str, answer: Value) {
        self.state.answers.lock().unwrap().insert(token.into(), answer);
    }

    /// Tessera now says `token` is inactive.
    fn revoke(&self, token: &str) {
        self.answer(token, json!({"active": false}));
    }

    fn calls(&self, token: &str) -> usize {
        self.state.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }

    fn hold(&self, token: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.state.held.lock().unwrap().insert(token.into(), notify.clone());
        notify
    }

    fn send(&self, text: String) {
        let sent = match &*self.state.stream.lock().unwrap() {
            Some(tx) => tx.send(Bytes::from(text)).is_ok(),
            None => false,
        };
        assert!(sent, "no stream open to send on");
    }

    fn push(&self, id: u64, event: &str, set: String) {
        self.send(format!("id: {id}\nevent: {event}\ndata: {set}\n\n"));
    }

    /// Closes the open stream; with `refuse`, later stream requests get 503.
    fn drop_stream(&self, refuse: bool) {
        self.state.refuse_streams.store(refuse, Ordering::SeqCst);
        self.state.stream.lock().unwrap().take();
    }

    fn stream_requests(&self) -> Vec<Option<String>> {
        self.state.streams.lock().unwrap().clone()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A SET as Tessera signs it (the signature is not checked by the resource server).
fn set(event_type: &str, sub_id: Option<Value>, issuer: &str) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut payload = json!({
        "iss": issuer, "iat": unix_now(), "jti": "1",
        "events": { event_type: { "event_timestamp": unix_now() } },
    });
    if let Some(sub_id) = sub_id {
        payload["sub_id"] = sub_id;
    }
    let header = json!({"alg": "RS256", "kid": "k", "typ": "secevent+jwt"});
    format!("{}.{}.c2ln", b64(&header), b64(&payload))
}

fn token_revoked(jti: &str, issuer: &str) -> String {
    set(TOKEN_REVOKED, Some(json!({"format": "opaque", "id": jti})), issuer)
}

fn config(fake: &FakeTessera, cache_ttl: Duration) -> ResourceServerConfig {
    ResourceServerConfig {
        cache_ttl,
        cache_ttl_with_feed: Duration::from_secs(300),
        // Long: tests that do not test it send no heartbeats.
        feed_idle_timeout: Duration::from_secs(60),
        ..ResourceServerConfig::new(fake.base(), CLIENT, SECRET)
    }
}

/// Polls `check` until it holds; panics after `limit`. Returns how long it took.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connected(rs: &ResourceServer) {
    eventually("the feed connects", PATIENCE, || async {
        rs.feed_status() == FeedStatus::Connected
    })
    .await;
}

async fn accepted(rs: &ResourceServer, token: &str) -> bool {
    rs.authenticate(token).await.is_ok()
}

#[actix_rt::test]
async fn a_revoked_token_is_refused_moments_after_its_event_despite_a_long_cache() {
    let fake = FakeTessera::start(true).await;
    fake.user_token("tsa_a", "jti-a", "g-a", "u-a", "c");
    fake.user_token("tsa_b", "jti-b", "g-b", "u-b", "c");
    // A minute without the feed, five with it: only the feed can end a cached answer quickly.
    let rs = ResourceServer::new(&config(&fake, Duration::from_secs(60))).unwrap();
    connected(&rs).await;
    for t in ["tsa_a", "tsa_b", "tsa_a", "tsa_b"] {
        assert!(accepted(&rs, t).await);
    }
    assert_eq!((fake.calls("tsa_a"), fake.calls("tsa_b")), (1, 1), "cached");

    fake.revoke("tsa_a");
    fake.push(5, "revocation", token_revoked("jti-a", fake.base()));
    let took = eventually("the revoked token is refused", Duration::from_secs(3), || async {
        matches!(rs.authenticate("tsa_a").await, Err(AuthError::InvalidToken))
    })
    .await;
    eprintln!("refused {took:?} after the event was sent");
    assert_eq!(
        fake.calls("tsa_a"),
        2,
        "evicted, asked once more, and the refusal is cached"
    );
    assert!(accepted(&rs, "tsa_b").await);
    assert_eq!(fake.calls("tsa_b"), 1, "the other token stays cached");
}

#[actix_rt::test]
async fn each_kind_of_event_evicts_the_tokens_it_names_and_no_other() {
    let fake = FakeTessera::start(true).await;
    let issuer = fake.base().to_owned();
    fake.user_token("t1", "j1", "g1", "u1", "c1");
    fake.user_token("t2", "j2", "g2", "u2", "c1");
    fake.user_token("t3", "j3", "g3", "u3", "c1");
    fake.user_token("t5", "j5", "g5", "u3", "c1");
    let now = unix_now();
    fake.answer(
        "t4",
        json!({"active": true, "client_id": "c2", "scope": "read", "iat": now, "exp": now + 3600, "jti": "j4"}),
    );
    let all = ["t1", "t2", "t3", "t4", "t5"];
    let markers: Vec<String> = (0..5).map(|n| format!("marker-{n}")).collect();
    for m in &markers {
        fake.user_token(m, &format!("j-{m}"), &format!("g-{m}"), &format!("u-{m}"), "c-markers");
    }
    let rs = ResourceServer::new(&config(&fake, Duration::from_secs(60))).unwrap();
    connected(&rs).await;
    for t in all.iter().copied().chain(markers.iter().map(String::as_str)) {
        assert!(accepted(&rs, t).await);
    }
    let steps: Vec<(String, &[&str])> = vec![
        (token_revoked("j1", &issuer), &["t1"]),
        (
            set(
                SESSION_REVOKED,
                Some(json!({"format": "complex", "session": {"format": "opaque", "id": "g2"}})),
                &issuer,
            ),
            &["t2"],
        ),
        (
            // Another issuer's user u3 is not ours: nothing goes.
            set(
                SESSION_REVOKED,
                Some(json!({"format": "iss_sub", "iss": "http://elsewhere.example", "sub": "u3"})),
                &issuer,
            ),
            &[],
        ),
        (
            set(
                SESSION_REVOKED,
                Some(json!({"format": "iss_sub", "iss": issuer, "sub": "u3"})),
                &issuer,
            ),
            &["t3", "t5"],
        ),
        (
            set(
                SESSION_REVOKED,
                Some(json!({"format": "complex", "application": {"format": "opaque", "id": "c2"}})),
                &issuer,
            ),
            &["t4"],
        ),
    ];
    let mut gone: Vec<&str> = Vec::new();
    for (n, (set, evicts)) in steps.into_iter().enumerate() {
        for t in evicts {
            fake.revoke(t);
        }
        fake.push(10 + 2 * n as u64, "revocation", set);
        // Events are handled in order: once the marker's event is, the step's is too.
        let marker = markers[n].as_str();
        fake.revoke(marker);
        fake.push(
            11 + 2 * n as u64,
            "revocation",
            token_revoked(&format!("j-{marker}"), &issuer),
        );
        eventually(&format!("step {n}: the marker is refused"), PATIENCE, || async {
            !accepted(&rs, marker).await
        })
        .await;
        for t in evicts {
            assert!(!accepted(&rs, t).await, "step {n}: {t} is refused");
            assert_eq!(fake.calls(t), 2, "step {n}: {t} was evicted and asked about once more");
            gone.push(t);
        }
        for t in all.iter().filter(|t| !gone.contains(t)) {
            assert!(accepted(&rs, t).await, "step {n}: {t} still works");
            assert_eq!(fake.calls(t), 1, "step {n}: {t} was not evicted");
        }
    }
}

#[actix_rt::test]
async fn a_dropped_feed_falls_back_to_the_short_ttl_for_old_young_and_new_entries() {
    const SHORT: Duration = Duration::from_millis(300);
    let fake = FakeTessera::start(true).await;
    for t in ["old", "young", "new"] {
        fake.user_token(t, &format!("j-{t}"), &format!("g-{t}"), "u", "c");
    }
    let rs = ResourceServer::new(&config(&fake, SHORT)).unwrap();
    connected(&rs).await;
    assert!(accepted(&rs, "old").await);
    actix_rt::time::sleep(SHORT * 3).await;
    assert!(accepted(&rs, "old").await);
    assert_eq!(fake.calls("old"), 1, "while connected the long TTL applies");
    assert!(accepted(&rs, "young").await);

    fake.drop_stream(true);
    eventually("the drop is noticed", PATIENCE, || async {
        rs.feed_status() == FeedStatus::Disconnected
    })
    .await;
    assert!(accepted(&rs, "old").await);
    assert_eq!(fake.calls("old"), 2, "older than the short TTL: asked again at once");
    assert!(accepted(&rs, "new").await);
    actix_rt::time::sleep(SHORT * 3).await;
    for t in ["young", "new"] {
        assert!(accepted(&rs, t).await);
        assert_eq!(
            fake.calls(t),
            2,
            "{t}: kept no longer than the short TTL while the feed is down"
        );
    }
    eventually("it tries to reconnect", PATIENCE, || async {
        fake.stream_requests().len() >= 2
    })
    .await;
}

#[actix_rt::test]
async fn reconnection_resumes_after_the_last_event_seen() {
    let fake = FakeTessera::start(true).await;
    let issuer = fake.base().to_owned();
    fake.user_token("t1", "j1", "g1", "u1", "c1");
    let rs = ResourceServer::new(&config(&fake, Duration::from_secs(60))).unwrap();
    connected(&rs).await;
    assert!(accepted(&rs, "t1").await);
    fake.push(41, "revocation", token_revoked("unrelated", &issuer));
    fake.revoke("t1");
    fake.push(1042, "revocation", token_revoked("j1", &issuer));
    eventually("the last event is handled", PATIENCE, || async {
        !accepted(&rs, "t1").await
    })
    .await;
    // A heartbeat and an id-less comment do not move the resume point.
    fake.send(": hb\n\n".into());

    fake.drop_stream(false);
    eventually("a second stream is open", PATIENCE, || async {
        fake.stream_requests().len() >= 2 && rs.feed_status() == FeedStatus::Connected
    })
    .await;
    let requests = fake.stream_requests();
    assert_eq!(requests[0], None, "the first stream starts at the head");
    assert_eq!(requests[1].as_deref(), Some("1042"), "{requests:?}");
}

#[actix_rt::test]
async fn a_silent_stream_counts_as_cut_and_heartbeats_keep_it() {
    let fake = FakeTessera::start(true).await;
    let rs = ResourceServer::new(&ResourceServerConfig {
        feed_idle_timeout: Duration::from_millis(1000),
        ..config(&fake, Duration::from_secs(60))
    })
    .unwrap();
    connected(&rs).await;
    // Heartbeats ten times as often as the idle timeout: the stream stays.
    for _ in 0..20 {
        fake.send(": hb\n\n".into());
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.stream_requests().len(), 1, "heartbeats kept the stream");
    // Silence: cut, then reopened.
    eventually("a silent stream is replaced", PATIENCE, || async {
        fake.stream_requests().len() >= 2
    })
    .await;
    connected(&rs).await;
}

#[actix_rt::test]
async fn a_reset_empties_the_cache() {
    let fake = FakeTessera::start(true).await;
    let issuer = fake.base().to_owned();
    let tokens = ["t1", "t2", "t3"];
    for t in tokens {
        fake.user_token(t, &format!("j-{t}"), &format!("g-{t}"), &format!("u-{t}"), "c");
    }
    let rs = ResourceServer::new(&config(&fake, Duration::from_secs(60))).unwrap();
    connected(&rs).await;
    for t in tokens {
        assert!(accepted(&rs, t).await);
        assert!(accepted(&rs, t).await);
    }
    assert!(tokens.iter().all(|t| fake.calls(t) == 1));
    fake.push(7, "reset", set(FEED_RESET, None, &issuer));
    // Each token is asked about again on its next use; "t1" first, polled, then the others.
    eventually("the reset is applied", PATIENCE, || async {
        accepted(&rs, "t1").await && fake.calls("t1") == 2
    })
    .await;
    for t in &tokens[1..] {
        assert!(accepted(&rs, t).await);
        assert_eq!(fake.calls(t), 2, "{t} was dropped by the reset");
    }
}

#[actix_rt::test]
async fn an_answer_computed_before_a_revocation_and_arriving_after_its_event_is_refused() {
    let fake = FakeTessera::start(true).await;
    let issuer = fake.base().to_owned();
    fake.user_token("raced", "j-raced", "g-raced", "u-raced", "c");
    fake.user_token("user-raced", "j-ur", "g-ur", "u-9", "c");
    // Issued after the revocation of its user: legit.
    let now = unix_now();
    fake.answer(
        "issued-later",
        json!({"active": true, "client_id": "c", "sub": "u-9", "scope": "read",
               "iat": now + 120, "exp": now + 3600, "jti": "j-later", "grant_id": "g-later"}),
    );
    fake.user_token("marker", "j-marker", "g-marker", "u-m", "c");
    let rs = ResourceServer::new(&config(&fake, Duration::from_secs(60))).unwrap();
    connected(&rs).await;
    assert!(accepted(&rs, "marker").await);

    let releases: Vec<_> = ["raced", "user-raced", "issued-later"]
        .into_iter()
        .map(|t| (t, fake.hold(t)))
        .collect();
    let pending: Vec<_> = releases
        .iter()
        .map(|(t, _)| {
            let (rs, t) = (rs.clone(), t.to_string());
            actix_rt::spawn(async move { rs.authenticate(&t).await })
        })
        .collect();
    eventually("the calls reach Tessera", PATIENCE, || async {
        ["raced", "user-raced", "issued-later"]
            .iter()
            .all(|t| fake.calls(t) == 1)
    })
    .await;
    // The revocations happen while the (active) answers are on their way.
    fake.push(1, "revocation", token_revoked("j-raced", &issuer));
    fake.push(
        2,
        "revocation",
        set(
            SESSION_REVOKED,
            Some(json!({"format": "iss_sub", "iss": issuer, "sub": "u-9"})),
            &issuer,
        ),
    );
    // Events are handled in order: once the marker's is, the two before it are too.
    fake.revoke("marker");
    fake.push(3, "revocation", token_revoked("j-marker", &issuer));
    eventually("the events are handled", PATIENCE, || async {
        !accepted(&rs, "marker").await
    })
    .await;
    for (_, release) in &releases {
        release.notify_one();
    }
    let mut results = Vec::new();
    for p in pending {
        results.push(p.await.unwrap().map(|c| c.client_id.clone()));
    }
    assert_eq!(results[0], Err(AuthError::InvalidToken), "revoked by jti");
    assert_eq!(
        results[1],
        Err(AuthError::InvalidToken),
        "its user was revoked after it was issued"
    );
    assert_eq!(results[2], Ok("c".to_owned()), "issued after its user's revocation");
    // The refusals are not followed by a cached "active".
    for t in ["raced", "user-raced"] {
        fake.revoke(t);
        assert!(!accepted(&rs, t).await, "{t}");
    }
}

#[actix_rt::test]
async fn without_an_advertised_feed_answers_use_the_short_ttl_until_one_appears() {
    const SHORT: Duration = Duration::from_millis(300);
    let fake = FakeTessera::start(false).await;
    fake.user_token("t1", "j1", "g1", "u1", "c1");
    fake.user_token("t2", "j2", "g2", "u2", "c1");
    let rs = ResourceServer::new(&config(&fake, SHORT)).unwrap();
    eventually("discovery is asked", PATIENCE, || async {
        fake.state.discoveries.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(rs.feed_status(), FeedStatus::Disconnected);
    assert!(accepted(&rs, "t1").await);
    actix_rt::time::sleep(SHORT * 3).await;
    assert!(accepted(&rs, "t1").await);
    assert_eq!(fake.calls("t1"), 2, "short TTL without a feed");

    // Tessera gains the feed (an API started before Tessera): found by a later discovery.
    fake.state.advertise.store(true, Ordering::SeqCst);
    connected(&rs).await;
    assert!(accepted(&rs, "t2").await);
    actix_rt::time::sleep(SHORT * 3).await;
    assert!(accepted(&rs, "t2").await);
    assert_eq!(fake.calls("t2"), 1, "long TTL once connected");
}

#[actix_rt::test]
async fn the_feed_can_be_turned_off() {
    let fake = FakeTessera::start(true).await;
    let rs = ResourceServer::new(&ResourceServerConfig {
        feed: false,
        ..config(&fake, Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(rs.feed_status(), FeedStatus::Off);
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.state.discoveries.load(Ordering::SeqCst), 0, "not even discovery");
    assert_eq!(rs.feed_status(), FeedStatus::Off);
}

#[actix_rt::test]
async fn with_the_feed_an_inactive_answer_is_kept_for_the_long_negative_ttl_until_a_reset() {
    let fake = FakeTessera::start(true).await;
    let issuer = fake.base().to_owned();
    let negative = |feed: bool| ResourceServerConfig {
        feed,
        negative_ttl: Duration::from_millis(50),
        negative_ttl_with_feed: Duration::from_secs(60),
        ..config(&fake, Duration::from_secs(5))
    };
    // TTL-only: the short negative TTL.
    let rs = ResourceServer::new(&negative(false)).unwrap();
    assert!(!accepted(&rs, "made-up-1").await);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert!(!accepted(&rs, "made-up-1").await);
    assert_eq!(
        fake.calls("made-up-1"),
        2,
        "asked again once the short negative TTL ended"
    );

    let rs = ResourceServer::new(&negative(true)).unwrap();
    connected(&rs).await;
    assert!(!accepted(&rs, "made-up-2").await);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert!(!accepted(&rs, "made-up-2").await);
    assert_eq!(fake.calls("made-up-2"), 1, "with the feed the refusal is kept");
    fake.push(9, "reset", set(FEED_RESET, None, &issuer));
    eventually("the reset drops the refusal too", PATIENCE, || async {
        !accepted(&rs, "made-up-2").await && fake.calls("made-up-2") == 2
    })
    .await;
}
