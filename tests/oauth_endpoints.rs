//! The OAuth endpoints over HTTP against a real server: client credentials, introspection,
//! revocation and discovery.

use crate::common;

use awc::http::StatusCode;
use common::TestServer;
use serde_json::json;

#[actix_rt::test]
async fn client_credentials_with_basic_and_post_authentication() {
    let s = TestServer::start("").await;
    let basic = s
        .post_form(
            "/oauth/token",
            Some(("demo-client", "demo-secret")),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::OK);
    assert_eq!(basic.header("cache-control"), Some("no-store"));
    assert_eq!(basic.json["token_type"], "Bearer");
    assert_eq!(basic.json["expires_in"], 3600);
    assert_eq!(basic.json["scope"], "read");

    let post = s
        .post_form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "demo-client"),
                ("client_secret", "demo-secret"),
            ],
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.text);
    assert_eq!(
        post.json["scope"], "openid profile email read write offline_access",
        "no scope asked: all registered"
    );
    assert_ne!(basic.json["access_token"], post.json["access_token"]);
    s.stop().await;
}

#[actix_rt::test]
async fn scope_must_be_a_subset_and_grant_must_be_registered() {
    let s = TestServer::start("").await;
    let wider = s
        .post_form(
            "/oauth/token",
            Some(("other-client", "other-secret")),
            &[("grant_type", "client_credentials"), ("scope", "read write")],
        )
        .await;
    assert_eq!(wider.status, StatusCode::BAD_REQUEST);
    assert_eq!(wider.json["error"], "invalid_scope");

    let resource_server = s
        .post_form(
            "/oauth/token",
            Some(("api-server", "api-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(resource_server.status, StatusCode::BAD_REQUEST);
    assert_eq!(resource_server.json["error"], "unauthorized_client");

    let unsupported = s
        .post_form(
            "/oauth/token",
            Some(("demo-client", "demo-secret")),
            &[("grant_type", "password")],
        )
        .await;
    assert_eq!(unsupported.json["error"], "unsupported_grant_type");
    s.stop().await;
}

#[actix_rt::test]
async fn introspection_of_an_active_token_reports_its_claims() {
    let s = TestServer::start("").await;
    let before = tessera::unix_now();
    let token = s.issue("read write").await;
    let r = s
        .post_form(
            "/oauth/introspect",
            Some(("api-server", "api-secret")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json;
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "read write");
    assert_eq!(v["client_id"], "demo-client");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["iss"], s.base);
    let iat = v["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= tessera::unix_now());
    assert_eq!(v["exp"].as_u64().unwrap(), iat + 3600);
    assert!(
        v.get("sub").is_none(),
        "a client-credentials token has no resource owner"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn unknown_malformed_and_oversized_tokens_are_just_inactive() {
    let s = TestServer::start("").await;
    let long = "x".repeat(2000);
    for token in ["tsa_unknown", "", "not a token at all \u{1F600}", long.as_str()] {
        let r = s
            .post_form(
                "/oauth/introspect",
                Some(("api-server", "api-secret")),
                &[("token", token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "token {token:?}");
        assert_eq!(r.json, json!({"active": false}), "token {token:?}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn introspection_requires_client_authentication() {
    let s = TestServer::start("").await;
    let token = s.issue("read").await;
    for auth in [
        None,
        Some(("api-server", "wrong-secret")),
        Some(("nobody", "api-secret")),
    ] {
        let r = s.post_form("/oauth/introspect", auth, &[("token", &token)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.json["error"], "invalid_client");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
        assert!(!r.text.contains("active"), "no token information leaks: {}", r.text);
    }
    let post = s
        .post_form(
            "/oauth/introspect",
            None,
            &[
                ("token", &token),
                ("client_id", "api-server"),
                ("client_secret", "api-secret"),
            ],
        )
        .await;
    assert_eq!(
        post.json["active"], true,
        "client_secret_post works for introspection too"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn expired_tokens_are_inactive_and_swept() {
    let s = TestServer::start("access_token_ttl_secs = 1\nsweep_interval_secs = 1").await;
    let token = s.issue("read").await;
    assert_eq!(s.introspect(&token).await["active"], true);
    assert_eq!(s.stored_tokens(), 1);
    // Expiry has one-second resolution: by iat + 2 s the token is past exp = iat + 1.
    actix_rt::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(s.introspect(&token).await, json!({"active": false}));
    let mut waited = 0;
    while s.stored_tokens() > 0 && waited < 50 {
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(s.stored_tokens(), 0, "the sweeper removed the expired record");
    s.stop().await;
}

#[actix_rt::test]
async fn revocation_by_the_owner_deactivates_the_token() {
    let s = TestServer::start("").await;
    let token = s.issue("read").await;
    let r = s
        .post_form(
            "/oauth/revoke",
            Some(("demo-client", "demo-secret")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.introspect(&token).await, json!({"active": false}));
    assert_eq!(s.stored_tokens(), 0);
    let again = s
        .post_form(
            "/oauth/revoke",
            Some(("demo-client", "demo-secret")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "revoking twice, or an unknown token, is 200"
    );
    let hinted = s
        .post_form(
            "/oauth/revoke",
            Some(("demo-client", "demo-secret")),
            &[("token", "tsa_never_issued"), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(hinted.status, StatusCode::OK);
    s.stop().await;
}

#[actix_rt::test]
async fn a_client_cannot_revoke_another_clients_token() {
    let s = TestServer::start("").await;
    let token = s.issue("read").await;
    let r = s
        .post_form(
            "/oauth/revoke",
            Some(("other-client", "other-secret")),
            &[("token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "unauthorized_client");
    assert_eq!(s.introspect(&token).await["active"], true, "the token survives");
    let anonymous = s.post_form("/oauth/revoke", None, &[("token", &token)]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.introspect(&token).await["active"], true);
    s.stop().await;
}

#[actix_rt::test]
async fn discovery_describes_exactly_what_is_supported() {
    let s = TestServer::start("").await;
    let r = s.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(r.status, StatusCode::OK);
    let d = r.json;
    assert_eq!(d["issuer"], s.base);
    assert_eq!(d["token_endpoint"], format!("{}/oauth/token", s.base));
    assert_eq!(d["introspection_endpoint"], format!("{}/oauth/introspect", s.base));
    assert_eq!(d["revocation_endpoint"], format!("{}/oauth/revoke", s.base));
    assert_eq!(
        d["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        json!(["S256"]),
        "plain is not offered"
    );
    let openid = s.get("/.well-known/openid-configuration").await;
    assert_eq!(openid.json, d, "both discovery documents describe the same server");
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256", "ES256"]));
    // Every advertised endpoint answers: 405 for GET on a POST-only endpoint, and something
    // other than 404 for the rest.
    for key in [
        "token_endpoint",
        "introspection_endpoint",
        "introspection_batch_endpoint",
        "revocation_endpoint",
    ] {
        let path = d[key].as_str().unwrap().strip_prefix(&s.base).unwrap().to_owned();
        assert_eq!(s.get(&path).await.status, StatusCode::METHOD_NOT_ALLOWED, "{key}");
    }
    // The feed's endpoints answer GET, and want the resource server's credentials.
    for key in ["revocation_events_endpoint", "revocation_events_stream_endpoint"] {
        let path = d[key].as_str().unwrap().strip_prefix(&s.base).unwrap().to_owned();
        assert_eq!(s.get(&path).await.status, StatusCode::UNAUTHORIZED, "{key}");
    }
    for key in [
        "authorization_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ] {
        let path = d[key].as_str().unwrap().strip_prefix(&s.base).unwrap().to_owned();
        assert_ne!(s.get(&path).await.status, StatusCode::NOT_FOUND, "{key}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn concurrent_issuance_from_many_clients_is_all_durable_and_distinct() {
    let s = TestServer::start("").await;
    let tokens: Vec<String> = futures_util::future::join_all((0..64).map(|_| s.issue("read"))).await;
    let unique: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!(unique.len(), 64);
    for t in &tokens {
        assert_eq!(s.introspect(t).await["active"], true);
    }
    assert_eq!(s.stored_tokens(), 64);
    s.stop().await;
}
