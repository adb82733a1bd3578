//! The introspection cache, counted at Tessera: repeated calls, concurrent calls for one token
//! (single-flight), inactive tokens (negative caching), and how long a revoked token lives on.
//!
//! One test in this binary, in phases: Tessera's introspection counter is process-wide, and a
//! second test running beside this one would add to it.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::api::{config, sum_metric, ApiServer};
use common::TestServer;
use futures_util::future::join_all;
use tessera_api::ResourceServerConfig;

/// Introspections Tessera has answered, from its `/metrics`.
async fn introspections(tessera: &TestServer) -> f64 {
    sum_metric(
        &tessera.get("/metrics").await.text,
        tessera::metrics::INTROSPECTIONS,
        "",
    )
}

#[actix_rt::test]
async fn the_cache_saves_introspections_and_bounds_staleness() {
    let tessera = TestServer::start("").await;
    const TTL: Duration = Duration::from_millis(1500);
    let api = ApiServer::start(ResourceServerConfig {
        negative_ttl: Duration::from_millis(1500),
        ..config(&tessera.base, TTL)
    })
    .await;

    // Repeated calls with one token: one introspection.
    let token = tessera.issue("read").await;
    let before = introspections(&tessera).await;
    for path in ["/api/protected", "/api/data", "/api/user/profile"]
        .iter()
        .cycle()
        .take(30)
    {
        assert_eq!(api.get(path, Some(&token)).await.status, StatusCode::OK);
    }
    assert_eq!(
        introspections(&tessera).await - before,
        1.0,
        "30 calls, one introspection"
    );

    // 50 concurrent requests for a token nobody has seen: one introspection.
    let fresh = tessera.issue("read").await;
    let before = introspections(&tessera).await;
    let replies = join_all((0..50).map(|_| api.get("/api/protected", Some(&fresh)))).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(introspections(&tessera).await - before, 1.0, "single-flight");
    let coalesced = api
        .counter(tessera_api::metrics::CACHE_LOOKUPS, "result=\"coalesced\"")
        .await;
    assert!(
        coalesced >= 1.0,
        "some of the 50 waited for another's call ({coalesced})"
    );

    // An unknown token, ten times: one introspection, then the negative entry answers.
    let before = introspections(&tessera).await;
    for _ in 0..10 {
        assert_eq!(
            api.get("/api/protected", Some("tsa_unknown_to_tessera")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(introspections(&tessera).await - before, 1.0, "negative caching");

    // A revoked token: the API may serve its cached answer for at most one TTL, and no longer.
    let doomed = tessera.issue("read").await;
    assert_eq!(api.get("/api/protected", Some(&doomed)).await.status, StatusCode::OK);
    let cached_at = Instant::now();
    tessera.revoke(&doomed).await;
    let wait = (cached_at + TTL + Duration::from_millis(50)).saturating_duration_since(Instant::now());
    actix_rt::time::sleep(wait).await;
    let before = introspections(&tessera).await;
    let r = api.get("/api/protected", Some(&doomed)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "refused once the TTL is over: {}",
        r.text
    );
    // ... and refused again from the negative entry, without asking Tessera again.
    assert_eq!(
        api.get("/api/protected", Some(&doomed)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(introspections(&tessera).await - before, 1.0);
}
