//! The demo API in front of a real Tessera: which tokens get in, where, and what the others hear
//! (RFC 6750 §3), plus the profile update's input checks.

use crate::common;

use std::time::Duration;

use awc::http::StatusCode;
use common::api::{config, ApiServer};
use common::browser::{self, Browser};
use common::{Reply, TestServer};

const TTL: Duration = Duration::from_secs(5);

fn challenge(r: &common::Reply) -> String {
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

#[actix_rt::test]
async fn a_valid_token_reaches_every_endpoint_its_scopes_allow() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let token = tessera.issue("read write").await;

    let r = api.get("/api/protected", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["client_id"], "demo-client");
    assert_eq!(r.json["scope"], "read write");

    let r = api.get("/api/data", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 3);

    let r = api.get("/api/user/profile", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["display_name"], "demo-client",
        "a client-credentials token is the client's own profile"
    );

    let r = api
        .post_json(
            "/api/user/update",
            Some(&token),
            r#"{"display_name":"Demo","bio":"hi"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api.get("/api/user/profile", Some(&token)).await;
    assert_eq!(
        (r.json["display_name"].as_str(), r.json["bio"].as_str()),
        (Some("Demo"), Some("hi"))
    );

    let r = api.get("/api/public", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["client_id"], serde_json::Value::Null);
}

#[actix_rt::test]
async fn a_signed_in_users_token_carries_their_identity() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let mut b = Browser::new(&tessera);
    let code = b.approve(&browser::authorize_query("openid read", &[])).await["code"].clone();
    let tokens = tessera.exchange_code(&code, browser::VERIFIER).await;
    let token = tokens.json["access_token"].as_str().unwrap();

    let r = api.get("/api/user/profile", Some(token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["username"], "alice");
    assert_eq!(r.json["display_name"], "alice");
    assert!(r.json["sub"].as_str().is_some_and(|s| !s.is_empty()));
}

#[actix_rt::test]
async fn missing_malformed_and_unknown_tokens_get_401_invalid_token() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let no_token = api.get("/api/protected", None).await;
    let basic = Reply::read(
        common::client()
            .get(format!("{}/api/protected", api.base))
            .basic_auth("a", "b")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let malformed = api.get("/api/data", Some("not a \"token\"")).await;
    let unknown = api.get("/api/user/profile", Some("tsa_made_up")).await;
    for (what, r) in [
        ("none", &no_token),
        ("basic", &basic),
        ("malformed", &malformed),
        ("unknown", &unknown),
    ] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert!(
            challenge(r).starts_with("Bearer error=\"invalid_token\""),
            "{what}: {}",
            challenge(r)
        );
        assert_eq!(r.json["error"], "invalid_token", "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    }
}

#[actix_rt::test]
async fn a_token_without_the_needed_scope_gets_403_naming_it() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let read_only = tessera.issue("read").await;
    let write_only = tessera.issue("write").await;

    let r = api
        .post_json("/api/user/update", Some(&read_only), r#"{"bio":"x"}"#)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(challenge(&r).starts_with("Bearer error=\"insufficient_scope\""));
    assert!(challenge(&r).contains("scope=\"write\""), "{}", challenge(&r));
    assert_eq!(r.json["scope"], "write");

    let r = api.get("/api/user/profile", Some(&write_only)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(challenge(&r).contains("scope=\"read\""));

    // Scope-free endpoints take either.
    for t in [&read_only, &write_only] {
        assert_eq!(api.get("/api/protected", Some(t)).await.status, StatusCode::OK);
    }
}

#[actix_rt::test]
async fn an_expired_token_is_refused_even_within_the_cache_ttl() {
    // Tessera counts whole seconds, so a token lives between ttl - 1 and ttl seconds: 2 leaves the
    // first call at least one second.
    let tessera = TestServer::start("access_token_ttl_secs = 2").await;
    // A cache TTL far longer than the token's life: the entry must still end at `exp`.
    let api = ApiServer::start(config(&tessera.base, Duration::from_secs(60))).await;
    let token = tessera.issue("read").await;
    assert_eq!(api.get("/api/protected", Some(&token)).await.status, StatusCode::OK);
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    // Still within the 60 s cache TTL, but past `exp`.
    let r = api.get("/api/protected", Some(&token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(challenge(&r).contains("invalid_token"));
}

#[actix_rt::test]
async fn a_refresh_token_is_not_a_bearer_token() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let mut b = Browser::new(&tessera);
    let code = b
        .approve(&browser::authorize_query("openid read offline_access", &[]))
        .await["code"]
        .clone();
    let tokens = tessera.exchange_code(&code, browser::VERIFIER).await;
    let refresh = tokens.json["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(
        tessera.introspect(refresh).await["active"],
        true,
        "Tessera calls it active"
    );
    let r = api.get("/api/protected", Some(refresh)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[actix_rt::test]
async fn bad_update_bodies_get_400_invalid_request_after_the_token_check() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let token = tessera.issue("read write").await;
    let big = format!(r#"{{"bio":"{}"}}"#, "x".repeat(5000));
    for (body, says) in [
        ("{not json", "not a valid update"),
        (r#"{"display_name":""}"#, "1 to 64"),
        (r#"{"nickname":"x"}"#, "unknown field"),
        ("{}", "display_name, bio, or both"),
        (big.as_str(), "at most 4096 bytes"),
    ] {
        let r = api.post_json("/api/user/update", Some(&token), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
        let description = r.json["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(says), "{body}: {description}");
    }
    // Not JSON at all.
    let r = Reply::read(
        common::client()
            .post(format!("{}/api/user/update", api.base))
            .bearer_auth(&token)
            .insert_header(("content-type", "text/plain"))
            .send_body("display_name=x")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    // Without a token the body is never looked at.
    let r = api.post_json("/api/user/update", None, "{not json").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The profile did not change.
    let r = api.get("/api/user/profile", Some(&token)).await;
    assert_eq!(r.json["display_name"], "demo-client");
}

#[actix_rt::test]
async fn health_metrics_and_unknown_routes() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let token = tessera.issue("read").await;
    api.get("/api/protected", Some(&token)).await;
    api.get("/api/protected", Some(&token)).await;
    api.get("/api/protected", Some("tsa_nope")).await;

    let r = api.get("/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["breaker"], "closed");

    let text = api.get("/metrics", None).await.text;
    for name in tessera_api::metrics::ALL {
        if *name != tessera_api::metrics::BREAKER_TRANSITIONS {
            assert!(text.contains(name), "{name} missing from /metrics");
        }
    }
    assert!(common::api::sum_metric(&text, tessera_api::metrics::CACHE_LOOKUPS, "result=\"hit\"") >= 1.0);

    let r = api.get("/no/such/thing", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "not_found");
}

#[actix_rt::test]
async fn a_token_revoked_before_its_first_use_is_refused() {
    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, TTL)).await;
    let token = tessera.issue("read").await;
    tessera.revoke(&token).await;
    let r = api.get("/api/protected", Some(&token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(challenge(&r).starts_with("Bearer error=\"invalid_token\""));
}

#[actix_rt::test]
async fn with_a_resource_indicator_only_tokens_for_this_api_get_in() {
    let tessera = TestServer::start(
        "[[clients]]\nclient_id = \"orders-api\"\nclient_secret = \"orders-secret\"\nresource = \"https://orders.example\"\n\
         [[clients]]\nclient_id = \"billing-api\"\nclient_secret = \"billing-secret\"\nresource = \"https://billing.example\"\n",
    )
    .await;
    let api = ApiServer::start(tessera_api::ResourceServerConfig {
        resource: Some("https://orders.example".into()),
        ..tessera_api::ResourceServerConfig::new(&tessera.base, "orders-api", "orders-secret")
    })
    .await;
    let issue = |resource: &'static str| {
        let tessera = &tessera;
        async move {
            let mut form = vec![("grant_type", "client_credentials"), ("scope", "read")];
            if !resource.is_empty() {
                form.push(("resource", resource));
            }
            let r = tessera
                .post_form("/oauth/token", Some(("demo-client", "demo-secret")), &form)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.json["access_token"].as_str().unwrap().to_owned()
        }
    };
    let for_orders = issue("https://orders.example").await;
    let r = api.get("/api/protected", Some(&for_orders)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let for_billing = issue("https://billing.example").await;
    let r = api.get("/api/protected", Some(&for_billing)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a token for another API: {}",
        r.text
    );
    assert!(challenge(&r).contains("invalid_token"), "{}", challenge(&r));

    let for_anyone = issue("").await;
    let r = api.get("/api/protected", Some(&for_anyone)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "an API that declares its resource wants tokens asked for it"
    );
}
