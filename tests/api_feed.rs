//! The resource server with the revocation feed, against a real Tessera: a token cached for five
//! minutes is refused moments after its revocation; a grant's revocation (refresh reuse) and a
//! user's removal evict every token of them; and killing and restarting Tessera never leaves the
//! API serving a revoked token beyond the short TTL.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::api::{config_with_feed, ApiServer};
use common::browser::{authorize_query, Browser, VERIFIER};
use common::{issue_at, revoke_at, TestServer};
use serde_json::json;

const LONG: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(1);
const DEMO: Option<(&str, &str)> = Some(("demo-client", "demo-secret"));

/// Waits until the API says its feed is connected.
async fn connected(api: &ApiServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if api.get("/health", None).await.json["feed"] == "connected" {
            return;
        }
        assert!(Instant::now() < deadline, "the API's feed did not connect");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after now the API first refuses `token` (401), polling every 5 ms, up to `within`.
async fn refused_after(api: &ApiServer, token: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if api.get("/api/protected", Some(token)).await.status == StatusCode::UNAUTHORIZED {
            return Some(start.elapsed());
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn accepted(api: &ApiServer, token: &str) -> bool {
    api.get("/api/protected", Some(token)).await.status == StatusCode::OK
}

#[actix_rt::test]
async fn a_token_cached_for_five_minutes_is_refused_moments_after_its_revocation() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config_with_feed(&tessera.base, SHORT, LONG)).await;
    connected(&api).await;
    let tokens: Vec<String> = futures_util::future::join_all((0..20).map(|_| tessera.issue("read"))).await;
    for t in &tokens {
        assert!(accepted(&api, t).await);
    }
    // Past the short TTL: only the long TTL (the feed is connected) keeps them cached.
    actix_rt::time::sleep(SHORT + Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for t in &tokens {
        assert!(accepted(&api, t).await, "still cached, with the feed");
        let start = Instant::now();
        tessera.revoke(t).await;
        let after = refused_after(&api, t, Duration::from_secs(5))
            .await
            .expect("refused within seconds, not after the five-minute TTL");
        latencies.push(start.elapsed().max(after));
    }
    latencies.sort();
    println!(
        "revocation to refusal at the API over {} revocations: median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // Generous for a shared machine: the event itself takes milliseconds.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(500),
        "{latencies:?}"
    );
    // Tokens that were not revoked stay cached and accepted.
    let kept = tessera.issue("read").await;
    assert!(accepted(&api, &kept).await);
    assert!(accepted(&api, &kept).await);
    api.handle.stop(true).await;
    tessera.stop().await;
}

async fn refresh(s: &TestServer, token: &str) -> common::Reply {
    s.post_form(
        "/oauth/token",
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

fn field(r: &common::Reply, name: &str) -> String {
    r.json[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {}", r.text))
        .to_owned()
}

#[actix_rt::test]
async fn a_grant_and_a_user_are_evicted_whole() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config_with_feed(&tessera.base, SHORT, LONG)).await;
    connected(&api).await;

    // A grant's tokens: the first access token, and the one a refresh gave.
    let mut b = Browser::new(&tessera);
    let code = b.approve(&authorize_query("openid read", &[])).await["code"].clone();
    let first = tessera.exchange_code(&code, VERIFIER).await;
    let (a0, r0) = (field(&first, "access_token"), field(&first, "refresh_token"));
    let second = refresh(&tessera, &r0).await;
    let a1 = field(&second, "access_token");
    // Another grant of the same user, which the reuse must leave alone.
    let code = b.approve(&authorize_query("openid read", &[])).await["code"].clone();
    let other = field(&tessera.exchange_code(&code, VERIFIER).await, "access_token");
    for t in [&a0, &a1, &other] {
        assert!(accepted(&api, t).await);
    }
    actix_rt::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(refresh(&tessera, &r0).await.json["error"], "invalid_grant", "reuse");
    for t in [&a0, &a1] {
        assert!(
            refused_after(&api, t, Duration::from_secs(5)).await.is_some(),
            "the reused grant's tokens are refused at once"
        );
    }
    assert!(accepted(&api, &other).await, "the user's other grant is untouched");

    // A user's removal: every token of theirs, over every grant.
    let r = tessera
        .admin_call(
            "POST",
            "/admin/users",
            Some(&json!({"username": "erin", "password": "erin-password-0123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut b = Browser::new(&tessera);
    let mut erins = Vec::new();
    for _ in 0..3 {
        let code = b
            .approve_as(&authorize_query("openid read", &[]), "erin", "erin-password-0123")
            .await["code"]
            .clone();
        erins.push(field(&tessera.exchange_code(&code, VERIFIER).await, "access_token"));
    }
    for t in &erins {
        assert!(accepted(&api, t).await);
    }
    actix_rt::time::sleep(SHORT + Duration::from_millis(200)).await;
    let r = tessera.admin_call("DELETE", "/admin/users/erin", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for t in &erins {
        assert!(
            refused_after(&api, t, Duration::from_secs(5)).await.is_some(),
            "every token of the removed user"
        );
    }
    assert!(accepted(&api, &other).await, "alice's token is untouched");
    api.handle.stop(true).await;
    tessera.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_rt::test]
async fn killing_and_restarting_tessera_never_leaves_a_revoked_token_served_past_the_short_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        "bind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nworkers = 2\nshards = 2\nid_token_alg = \"ES256\"\nfeed_heartbeat_ms = 200\n{}",
        dir.path().join("data"),
        common::CLIENTS
    );
    std::fs::write(dir.path().join("tessera.toml"), toml).unwrap();
    let (mut tessera, base) = common::spawn_tessera(dir.path()).await;
    let api = ApiServer::start(config_with_feed(&base, SHORT, LONG)).await;
    connected(&api).await;
    let tokens: Vec<String> = futures_util::future::join_all((0..6).map(|_| issue_at(&base))).await;
    for t in &tokens {
        assert!(accepted(&api, t).await);
    }
    actix_rt::time::sleep(SHORT + Duration::from_millis(200)).await;

    // Revoked the moment before the kill: its event may or may not have left Tessera.
    revoke_at(&base, &tokens[0]).await;
    tessera.kill();
    let killed = Instant::now();
    // The API sees its stream end (a closed connection, or at worst its idle timeout) ...
    while api.get("/health", None).await.json["feed"] == "connected" {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the API did not notice the feed drop"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    println!("the API noticed the dead feed after {:?}", killed.elapsed());
    // ... and falls back to the short TTL at once: entries older than it are asked again
    // (Tessera is down: 503), never served from the long TTL.
    let at_once = api.get("/api/protected", Some(&tokens[1])).await.status;
    assert_ne!(
        at_once,
        StatusCode::OK,
        "an entry past the short TTL is not served while the feed is down"
    );
    assert_ne!(api.get("/api/protected", Some(&tokens[0])).await.status, StatusCode::OK);

    let (_again, base) = common::spawn_tessera(dir.path()).await;
    println!("tessera restarted in {:?}", killed.elapsed());
    connected(&api).await;
    // Revoked while the API reconnected, or after: refused within the short TTL either way.
    revoke_at(&base, &tokens[2]).await;
    let start = Instant::now();
    for t in [&tokens[0], &tokens[2]] {
        let after = refused_after(&api, t, SHORT + Duration::from_secs(2)).await;
        assert!(after.is_some(), "a revoked token is refused within the short TTL");
    }
    println!(
        "revoked tokens refused {:?} after the restart's revocation",
        start.elapsed()
    );
    for t in [&tokens[1], &tokens[3], &tokens[4], &tokens[5]] {
        assert!(accepted(&api, t).await, "tokens that were not revoked work again");
    }
    // Cached again under the feed, and evicted by it.
    actix_rt::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(accepted(&api, &tokens[3]).await);
    revoke_at(&base, &tokens[3]).await;
    assert!(refused_after(&api, &tokens[3], Duration::from_secs(5)).await.is_some());
    api.handle.stop(true).await;
}

/// The sum of Tessera's `tessera_http_requests_total` for `route`.
async fn tessera_requests(tessera: &TestServer, route: &str) -> f64 {
    common::api::sum_metric(
        &tessera.get("/metrics").await.text,
        "tessera_http_requests_total",
        &format!("route=\"{route}\""),
    )
}

#[actix_rt::test]
async fn a_storm_of_misses_shares_introspection_calls() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(tessera_api::ResourceServerConfig {
        feed: false,
        ..config_with_feed(&tessera.base, LONG, LONG)
    })
    .await;
    let tokens: Vec<String> = futures_util::future::join_all((0..300).map(|_| tessera.issue("read"))).await;
    for t in tokens.iter().step_by(10) {
        tessera.revoke(t).await;
    }
    let (single, batch) = (
        tessera_requests(&tessera, "/oauth/introspect").await,
        tessera_requests(&tessera, "/oauth/introspect/batch").await,
    );
    let answers = futures_util::future::join_all(tokens.iter().map(|t| api.get("/api/protected", Some(t)))).await;
    for (i, r) in answers.iter().enumerate() {
        let want = if i % 10 == 0 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(r.status, want, "token {i}: each gets its own verdict");
    }
    let calls = tessera_requests(&tessera, "/oauth/introspect").await - single;
    let batches = tessera_requests(&tessera, "/oauth/introspect/batch").await - batch;
    println!("300 concurrent misses: {calls} single calls and {batches} batch calls to Tessera");
    assert!(batches >= 1.0, "concurrent misses went in batches");
    // Other tests of this binary share the metrics; their few calls fit in the margin.
    assert!(calls + batches < 150.0, "{calls} + {batches} calls for 300 misses");
    api.handle.stop(true).await;
    tessera.stop().await;
}
