//! The audit log and the request id, end to end: a scripted walk through every kind of security
//! event leaves each of them in `<data_dir>/audit.log`, stamped with its request, and none of the
//! tokens, codes, secrets or passwords the walk used; a request id is taken only from a trusted
//! proxy, echoed, and named by the log lines of its request.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use awc::http::StatusCode;
use common::browser::{self, Browser};
use common::{client, Reply, TestServer};
use serde_json::{json, Value};

/// Everything the tracing subscriber of this test binary writes, with Tessera's line format.
fn log_lines() -> &'static common::CapturedLog {
    static LOG: OnceLock<common::CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = common::CapturedLog::default();
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || sink.clone())
            .map_event_format(tessera::logging::WithRequestId::text)
            .init();
        log
    })
}

/// A form POST as if through a proxy that names the request `id` and forwards for `from`.
async fn post_via_proxy(
    s: &TestServer,
    path: &str,
    basic: (&str, &str),
    form: &[(&str, &str)],
    id: &str,
    from: &str,
) -> Reply {
    let req = client()
        .post(s.url(path))
        .basic_auth(basic.0, basic.1)
        .insert_header(("x-request-id", id))
        .insert_header(("x-forwarded-for", from));
    Reply::read(req.send_form(&form).await.unwrap()).await
}

/// Signs alice in at demo-client and returns the code.
async fn code_of_a_sign_in(s: &TestServer) -> String {
    let query = browser::authorize_query("openid read offline_access", &[]);
    Browser::new(s).approve(&query).await["code"].clone()
}

/// The audit log's events once it holds every one of `wanted` (it is written off the request
/// path, so it may trail the answers by a moment).
async fn events_when_complete(s: &TestServer, wanted: &[&str]) -> (String, Vec<Value>) {
    let path = s.data_dir().join("audit.log");
    let mut last = String::new();
    for _ in 0..100 {
        last = std::fs::read_to_string(&path).unwrap_or_default();
        let events: Vec<Value> = last
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
            .collect();
        let names: BTreeSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            return (last, events);
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audit log lacks some of {wanted:?}:\n{last}");
}

fn find<'a>(events: &'a [Value], event: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == event && pred(e))
        .unwrap_or_else(|| panic!("no {event} event like that in {events:#?}"))
}

#[actix_rt::test]
async fn a_scripted_walk_leaves_every_event_and_no_credential() {
    log_lines();
    let s =
        TestServer::start("trusted_proxies = [\"127.0.0.1\"]\nlogin_lockout_after = 2\nclient_auth_failure_burst = 1")
            .await;
    // What must never reach the log: every token, code, secret and password of the walk.
    let mut credentials: Vec<String> = ["demo-secret", "api-secret", "wonderland-42"]
        .map(String::from)
        .to_vec();
    credentials.push(s.admin_token());

    // Clients and users, created and changed through the admin API.
    let app = json!({
        "client_id": "walk-app",
        "client_secret": "walk-app-secret-number-one-0123456789",
        "grant_types": ["client_credentials"],
        "scopes": ["read"],
    });
    let changed_app = json!({
        "client_id": "walk-app",
        "client_secret": "walk-app-secret-number-two-0123456789",
        "grant_types": ["client_credentials"],
        "scopes": ["read", "write"],
    });
    for body in [&app, &changed_app] {
        let r = s.admin_call("POST", "/admin/clients", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        credentials.push(body["client_secret"].as_str().unwrap().to_owned());
    }
    for password in ["carol-password-one", "carol-password-two"] {
        let r = s
            .admin_call(
                "POST",
                "/admin/users",
                Some(&json!({"username": "carol", "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        credentials.push(password.to_owned());
    }

    // Client credentials, through a proxy that names the request and the client's address.
    let r = post_via_proxy(
        &s,
        "/oauth/token",
        ("demo-client", "demo-secret"),
        &[("grant_type", "client_credentials"), ("scope", "read")],
        "walk-issue-1",
        "203.0.113.9",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.header("x-request-id"),
        Some("walk-issue-1"),
        "the proxy's id is echoed"
    );
    credentials.push(r.json["access_token"].as_str().unwrap().to_owned());

    // A code, its exchange, and its replay (which revokes what it gave).
    let code = code_of_a_sign_in(&s).await;
    credentials.push(code.clone());
    let first = s.exchange_code(&code, browser::VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    for t in ["access_token", "refresh_token", "id_token"] {
        credentials.push(first.json[t].as_str().unwrap().to_owned());
    }
    let replay = post_via_proxy(
        &s,
        "/oauth/token",
        ("demo-client", "demo-secret"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", browser::REDIRECT),
            ("code_verifier", browser::VERIFIER),
        ],
        "walk-replay-1",
        "203.0.113.10",
    )
    .await;
    assert_eq!(replay.json["error"], "invalid_grant", "{}", replay.text);

    // A refresh, then the reuse of the refresh token it replaced.
    let code = code_of_a_sign_in(&s).await;
    credentials.push(code.clone());
    let second = s.exchange_code(&code, browser::VERIFIER).await;
    let old_refresh = second.json["refresh_token"].as_str().unwrap().to_owned();
    credentials.push(second.json["access_token"].as_str().unwrap().to_owned());
    credentials.push(old_refresh.clone());
    let refresh = |token: String| {
        let s = &s;
        async move {
            s.post_form(
                "/oauth/token",
                Some(("demo-client", "demo-secret")),
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let rotated = refresh(old_refresh.clone()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    credentials.push(rotated.json["access_token"].as_str().unwrap().to_owned());
    credentials.push(rotated.json["refresh_token"].as_str().unwrap().to_owned());
    assert_eq!(refresh(old_refresh).await.json["error"], "invalid_grant");

    // A revocation of a refresh token (RFC 7009), which ends its grant.
    let code = code_of_a_sign_in(&s).await;
    credentials.push(code.clone());
    let third = s.exchange_code(&code, browser::VERIFIER).await;
    let third_refresh = third.json["refresh_token"].as_str().unwrap().to_owned();
    credentials.push(third.json["access_token"].as_str().unwrap().to_owned());
    credentials.push(third_refresh.clone());
    s.revoke(&third_refresh).await;

    // Wrong passwords for carol until she is locked out.
    let wrong = "not-carols-password-7";
    credentials.push(wrong.to_owned());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let mut b = Browser::new(&s);
        let page = b
            .get(&format!("/oauth/authorize?{}", browser::authorize_query("openid", &[])))
            .await;
        assert!(page.text.contains("name=\"password\""), "{}", page.text);
        let answer = b.submit(&page, &[("username", "carol"), ("password", wrong)]).await;
        statuses.push(answer.status);
    }
    assert_ne!(
        statuses[2],
        StatusCode::SEE_OTHER,
        "carol never signed in: {statuses:?}"
    );

    // Wrong secrets for the resource server until it is rate limited.
    let mut last = StatusCode::OK;
    for _ in 0..3 {
        last = s
            .post_form(
                "/oauth/introspect",
                Some(("api-server", "a-wrong-secret-for-api")),
                &[("token", "tsa_x")],
            )
            .await
            .status;
    }
    credentials.push("a-wrong-secret-for-api".to_owned());
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);

    // A key rotation, mass revocations and removals.
    let admin_ok = |r: Reply| assert!(r.status.is_success(), "{} {}", r.status, r.text);
    admin_ok(s.admin_call("POST", "/admin/keys/rotate", None).await);
    admin_ok(s.admin_call("POST", "/admin/users/alice/revoke", None).await);
    admin_ok(s.admin_call("POST", "/admin/clients/walk-app/revoke", None).await);
    admin_ok(s.admin_call("DELETE", "/admin/clients/walk-app", None).await);
    admin_ok(s.admin_call("DELETE", "/admin/users/carol", None).await);

    let wanted = [
        "client_created",
        "client_changed",
        "client_removed",
        "client_tokens_revoked",
        "user_created",
        "user_changed",
        "user_removed",
        "user_tokens_revoked",
        "key_rotated",
        "token_issued",
        "token_refreshed",
        "token_revoked",
        "code_replay",
        "refresh_reuse",
        "family_revoked",
        "sign_in",
        "sign_in_locked",
        "rate_limited",
    ];
    let (text, events) = events_when_complete(&s, &wanted).await;
    s.stop().await;

    for c in &credentials {
        assert!(
            !text.contains(c.as_str()),
            "the audit log holds a credential ({} chars)",
            c.len()
        );
    }
    // Seeding from the config file comes before any request; everything after came through one.
    let seeded = events.iter().take_while(|e| e["actor"] == "config").count();
    assert!(
        seeded >= 4,
        "the config file's clients and users are seeded: {events:#?}"
    );
    for e in &events[seeded..] {
        for field in ["time", "event", "outcome", "request_id"] {
            assert!(e[field].is_string(), "{field} missing: {e}");
        }
        // A refusal under a limit comes before anyone is known; every other event names who acted.
        assert!(e["actor"].is_string() || e["event"] == "rate_limited", "no actor: {e}");
    }

    // Each event says who did what to whom, and through which request.
    let cc = find(&events, "token_issued", |e| e["grant_type"] == "client_credentials");
    assert_eq!(cc["request_id"], "walk-issue-1");
    assert_eq!(cc["client_addr"], "203.0.113.9", "the trusted proxy's client address");
    assert_eq!(cc["actor"], "demo-client");
    let code_issued = find(&events, "token_issued", |e| e["grant_type"] == "authorization_code");
    assert!(code_issued["subject"].is_string(), "{code_issued}");
    assert_eq!(
        code_issued["target"], code_issued["subject"],
        "a user's grant is about the user"
    );
    assert!(code_issued["grant"].is_string());
    let replayed = find(&events, "code_replay", |_| true);
    assert_eq!(replayed["outcome"], "refused");
    assert_eq!(replayed["request_id"], "walk-replay-1");
    assert_eq!(replayed["client_addr"], "203.0.113.10");
    let replay_revoked = find(&events, "family_revoked", |e| e["reason"] == "code_replay");
    assert_eq!(replay_revoked["grant"], replayed["grant"], "one grant, one name");
    assert_eq!(replay_revoked["request_id"], "walk-replay-1");
    let reused = find(&events, "refresh_reuse", |_| true);
    find(&events, "family_revoked", |e| {
        e["reason"] == "refresh_reuse" && e["grant"] == reused["grant"]
    });
    let refreshed = find(&events, "token_refreshed", |_| true);
    assert_eq!(
        refreshed["grant"], reused["grant"],
        "the refresh and its reuse are one grant"
    );
    assert_eq!(refreshed["grant_type"], "refresh_token");
    let revoked = find(&events, "token_revoked", |_| true);
    find(&events, "family_revoked", |e| {
        e["reason"] == "revocation" && e["grant"] == revoked["grant"]
    });
    find(&events, "sign_in", |e| {
        e["outcome"] == "success" && e["target"] == "alice"
    });
    let failures = events
        .iter()
        .filter(|e| e["event"] == "sign_in" && e["outcome"] == "failure" && e["target"] == "carol")
        .count();
    assert_eq!(failures, 2, "two failures, then the lockout");
    find(&events, "sign_in_locked", |e| {
        e["target"] == "carol" && e["outcome"] == "refused"
    });
    let limited = find(&events, "rate_limited", |_| true);
    assert_eq!(limited["target"], "/oauth/introspect");
    assert_eq!(limited["reason"], "client_auth_failures");
    find(&events, "key_rotated", |e| e["actor"] == "admin-api");
    find(&events, "client_created", |e| {
        e["target"] == "walk-app" && e["actor"] == "admin-api"
    });
    find(&events, "client_changed", |e| e["target"] == "walk-app");
    find(&events, "user_changed", |e| e["target"] == "carol");

    // The log lines of the replayed request name it.
    let logged = log_lines().text();
    let replay_line = logged
        .lines()
        .find(|l| l.contains("authorization code replayed"))
        .expect("the replay is logged");
    assert!(replay_line.ends_with("request_id=walk-replay-1"), "{replay_line}");
    let family_line = logged
        .lines()
        .find(|l| l.contains("revoked a token family") && l.contains("code_replay"))
        .expect("the revocation is logged");
    assert!(family_line.ends_with("request_id=walk-replay-1"), "{family_line}");
}

#[actix_rt::test]
async fn a_request_id_is_believed_only_from_a_trusted_proxy() {
    let s = TestServer::start("").await;
    let forged = client()
        .get(s.url("/health"))
        .insert_header(("x-request-id", "forged-id"))
        .send()
        .await
        .unwrap();
    let forged = Reply::read(forged).await;
    let id = forged
        .header("x-request-id")
        .expect("every answer names its request")
        .to_owned();
    assert_ne!(
        id, "forged-id",
        "a peer that is no trusted proxy does not name requests"
    );
    let again = s.get("/health").await;
    let other = again.header("x-request-id").unwrap();
    assert_ne!(id, other, "each request has its own id");
    // Errors name their request too.
    assert!(s.get("/no/such/route").await.header("x-request-id").is_some());
    s.stop().await;

    let s = TestServer::start("trusted_proxies = [\"127.0.0.0/8\"]").await;
    for (sent, kept) in [("trace-7f1c", true), ("has space", false), (&*"x".repeat(200), false)] {
        let r = Reply::read(
            client()
                .get(s.url("/health"))
                .insert_header(("x-request-id", sent))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let echoed = r.header("x-request-id").unwrap();
        assert_eq!(echoed == sent, kept, "{sent:?} → {echoed:?}");
    }
    s.stop().await;
}
