//! Who may introspect what, audiences, and rate limits, over HTTP against a real server:
//! introspection permission (RFC 7662 §4), RFC 8707 resource indicators and the `aud` they give,
//! refresh tokens only for `offline_access`, per-client rates, failed authentications slowed
//! per client and address, trusted proxies, and per-address limits on the browser endpoints.

use crate::common;

use awc::http::StatusCode;
use common::browser::{authorize_query, Browser, REDIRECT, VERIFIER};
use common::{client, Reply, TestServer};

const DEMO: Option<(&str, &str)> = Some(("demo-client", "demo-secret"));

/// Clients of these tests, after the common ones' top-level settings.
const CLIENTS: &str = r#"
[[clients]]
client_id = "rs-a"
client_secret = "rs-a-secret"
resource = "https://a.example"

[[clients]]
client_id = "rs-b"
client_secret = "rs-b-secret"
resource = "https://b.example"

[[clients]]
client_id = "worker"
client_secret = "worker-secret"
grant_types = ["client_credentials"]
scopes = ["read"]
introspect = true

[[clients]]
client_id = "noisy"
client_secret = "noisy-secret"
rate_limit_per_sec = 2

[[clients]]
client_id = "offline-app"
client_secret = "offline-secret"
redirect_uris = ["http://127.0.0.1:3001/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "offline_access"]
"#;

async fn start(settings: &str) -> TestServer {
    TestServer::start(&format!("{settings}\n{CLIENTS}")).await
}

async fn introspect_as(s: &TestServer, who: (&str, &str), token: &str) -> Reply {
    s.post_form("/oauth/introspect", Some(who), &[("token", token)]).await
}

async fn issue_for(s: &TestServer, resources: &[&str]) -> Reply {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", "read")];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    s.post_form("/oauth/token", DEMO, &form).await
}

/// POSTs a form as if forwarded for `forwarded_for` (the test's peer is 127.0.0.1).
async fn post_forwarded(s: &TestServer, path: &str, forwarded_for: &str, who: (&str, &str)) -> Reply {
    let req = client()
        .post(s.url(path))
        .insert_header(("x-forwarded-for", forwarded_for))
        .basic_auth(who.0, who.1);
    Reply::read(req.send_form(&[("token", "tsa_whatever")]).await.unwrap()).await
}

fn assert_too_many(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1, "whole seconds, at least one");
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

fn assert_oauth_too_many(r: &Reply) {
    assert_too_many(r);
    assert_eq!(r.json["error"], "temporarily_unavailable", "{}", r.text);
    assert!(r.json["error_description"].is_string());
}

#[actix_rt::test]
async fn only_clients_allowed_to_introspect_may() {
    let s = start("").await;
    let token = s.issue("read").await;
    let refused = introspect_as(&s, ("demo-client", "demo-secret"), &token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.json["error"], "invalid_client");
    assert!(
        !refused.text.contains("active"),
        "nothing about the token: {}",
        refused.text
    );
    let allowed = introspect_as(&s, ("worker", "worker-secret"), &token).await;
    assert_eq!(allowed.json["active"], true, "introspect = true: {}", allowed.text);
    assert_eq!(
        s.introspect(&token).await["active"],
        true,
        "a resource server by default"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_token_with_an_audience_is_active_only_inside_it() {
    let s = start("").await;
    let r = issue_for(&s, &["https://a.example"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.json["access_token"].as_str().unwrap();
    let at_a = introspect_as(&s, ("rs-a", "rs-a-secret"), token).await;
    assert_eq!(at_a.json["active"], true, "{}", at_a.text);
    assert_eq!(at_a.json["aud"], "https://a.example", "one audience is a string");
    let at_b = introspect_as(&s, ("rs-b", "rs-b-secret"), token).await;
    assert_eq!(at_b.status, StatusCode::OK);
    assert_eq!(at_b.json, serde_json::json!({"active": false}));
    assert_eq!(
        s.introspect(token).await,
        serde_json::json!({"active": false}),
        "a resource server without an indicator is outside every audience"
    );

    let both = issue_for(&s, &["https://a.example", "https://b.example"]).await;
    let token = both.json["access_token"].as_str().unwrap();
    let at_b = introspect_as(&s, ("rs-b", "rs-b-secret"), token).await;
    assert_eq!(at_b.json["active"], true);
    assert_eq!(
        at_b.json["aud"],
        serde_json::json!(["https://a.example", "https://b.example"])
    );

    let plain = s.issue("read").await;
    let at_b = introspect_as(&s, ("rs-b", "rs-b-secret"), &plain).await;
    assert_eq!(at_b.json["active"], true, "no resource asked: valid everywhere");
    assert!(at_b.json.get("aud").is_none());
    s.stop().await;
}

#[actix_rt::test]
async fn only_registered_resources_may_be_asked_for() {
    let s = start("").await;
    for bad in [
        "https://c.example",
        "https://a.example/",
        "not-a-uri",
        "https://a.example#f",
    ] {
        let r = issue_for(&s, &[bad]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_target", "{bad}");
    }
    let r = issue_for(&s, &["https://a.example", "https://c.example"]).await;
    assert_eq!(r.json["error"], "invalid_target", "one unknown among known ones");
    let twice = s
        .post_form(
            "/oauth/token",
            DEMO,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "read"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(
        twice.json["error"], "invalid_request",
        "other parameters may not repeat"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn refresh_tokens_go_to_offline_access_and_the_code_grant_takes_an_audience() {
    let s = start("").await;
    let exchange = |code: String, resource: Option<&'static str>| {
        let s = &s;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ];
            form.extend(resource.map(|r| ("resource", r)));
            s.post_form("/oauth/token", Some(("offline-app", "offline-secret")), &form)
                .await
        }
    };
    let mut b = Browser::new(&s);
    let online = b
        .approve(&authorize_query("openid", &[("client_id", "offline-app")]))
        .await;
    let r = exchange(online["code"].clone(), Some("https://b.example")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("refresh_token").is_none(), "no offline_access: {}", r.text);
    let access = r.json["access_token"].as_str().unwrap();
    assert_eq!(
        introspect_as(&s, ("rs-b", "rs-b-secret"), access).await.json["active"],
        true
    );
    assert_eq!(
        introspect_as(&s, ("rs-a", "rs-a-secret"), access).await.json["active"],
        false
    );

    let offline = b
        .approve(&authorize_query(
            "openid offline_access",
            &[("client_id", "offline-app")],
        ))
        .await;
    let r = exchange(offline["code"].clone(), None).await;
    assert!(r.json["refresh_token"].is_string(), "offline_access asked: {}", r.text);
    s.stop().await;
}

#[actix_rt::test]
async fn a_client_over_its_rate_gets_429_while_others_are_served() {
    let s = start("").await;
    let token = s.issue("read").await;
    let mut refused = None;
    for _ in 0..10 {
        let r = introspect_as(&s, ("noisy", "noisy-secret"), &token).await;
        if r.status != StatusCode::OK {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("ten requests at once exceed two per second");
    assert_oauth_too_many(&refused);
    assert_eq!(s.introspect(&token).await["active"], true, "another client is served");
    s.stop().await;
}

#[actix_rt::test]
async fn failed_authentications_slow_one_address_not_the_client_elsewhere() {
    let s = start("trusted_proxies = [\"127.0.0.1\"]\nclient_auth_failure_burst = 2").await;
    let (wrong, right) = (("api-server", "wrong-secret"), ("api-server", "api-secret"));
    let attacker = "203.0.113.1";
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(post_forwarded(&s, "/oauth/introspect", attacker, wrong).await.status);
    }
    assert_eq!(statuses[..2], [StatusCode::UNAUTHORIZED; 2], "the allowance");
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let blocked = post_forwarded(&s, "/oauth/introspect", attacker, right).await;
    assert_oauth_too_many(&blocked);
    assert_eq!(
        post_forwarded(&s, "/oauth/introspect", "198.51.100.7", right)
            .await
            .status,
        StatusCode::OK,
        "the real client at another address still authenticates"
    );
    // Unknown ids count against the address alone, apart from the registered client there.
    let elsewhere = "198.51.100.8";
    for n in 0..4 {
        let id = format!("made-up-{n}");
        post_forwarded(&s, "/oauth/introspect", elsewhere, (&id, "x")).await;
    }
    let r = post_forwarded(&s, "/oauth/introspect", elsewhere, ("made-up-9", "x")).await;
    assert_oauth_too_many(&r);
    assert_eq!(
        post_forwarded(&s, "/oauth/introspect", elsewhere, right).await.status,
        StatusCode::OK
    );
    // Only the proxy's own hop counts: what the client wrote to the left is ignored.
    let r = post_forwarded(&s, "/oauth/introspect", &format!("198.51.100.7, {attacker}"), right).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let m = s.get("/metrics").await;
    assert!(m
        .text
        .contains("tessera_rate_limited_total{endpoint=\"/oauth/introspect\",reason=\"client_auth_failures\"}"));
    s.stop().await;
}

#[actix_rt::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let s = start("client_auth_failure_burst = 2").await;
    for _ in 0..4 {
        post_forwarded(&s, "/oauth/introspect", "203.0.113.1", ("api-server", "wrong-secret")).await;
    }
    let r = post_forwarded(&s, "/oauth/introspect", "198.51.100.7", ("api-server", "api-secret")).await;
    assert_oauth_too_many(&r);
    s.stop().await;
}

#[actix_rt::test]
async fn browser_endpoints_are_limited_per_address() {
    let s = start("address_rate_per_sec = 1\naddress_rate_burst = 2\ntrusted_proxies = [\"127.0.0.1\"]").await;
    let query = authorize_query("openid", &[]);
    let get = |xff: &'static str| {
        let url = s.url(&format!("/oauth/authorize?{query}"));
        async move {
            Reply::read(
                client()
                    .get(url)
                    .insert_header(("x-forwarded-for", xff))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let mut last = None;
    for _ in 0..5 {
        let r = get("203.0.113.1").await;
        if r.status != StatusCode::OK {
            last = Some(r);
            break;
        }
    }
    let page = last.expect("five requests at once exceed a burst of two");
    assert_too_many(&page);
    assert!(page.header("content-type").unwrap().starts_with("text/html"), "a page");
    assert_eq!(get("203.0.113.2").await.status, StatusCode::OK, "another address");

    let mut userinfo = None;
    for _ in 0..5 {
        let r = Reply::read(
            client()
                .get(s.url("/oauth/userinfo"))
                .insert_header(("x-forwarded-for", "203.0.113.3"))
                .bearer_auth("tsa_unknown")
                .send()
                .await
                .unwrap(),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            userinfo = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    assert_oauth_too_many(&userinfo.expect("userinfo is limited too"));
    s.stop().await;
}
