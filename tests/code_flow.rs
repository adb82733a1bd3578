//! The authorization code flow over HTTP against a real server: login and consent pages, codes
//! with PKCE, the token endpoint's code and refresh grants with rotation and reuse detection,
//! revocation of a grant's tokens, and where each error goes.

use crate::common;

use awc::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::browser::{authorize_query, challenge, query_of, Browser, REDIRECT, VERIFIER};
use common::TestServer;
use serde_json::Value;

const DEMO: Option<(&str, &str)> = Some(("demo-client", "demo-secret"));

async fn exchange(s: &TestServer, code: &str, verifier: &str) -> common::Reply {
    s.exchange_code(code, verifier).await
}

async fn refresh(s: &TestServer, token: &str, scope: Option<&str>) -> common::Reply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    s.post_form("/oauth/token", DEMO, &form).await
}

fn jwt_payload(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn token(reply: &common::Reply, name: &str) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name}: {}", reply.text))
        .to_owned()
}

#[actix_rt::test]
async fn login_consent_code_and_tokens() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let redirect = b.approve(&authorize_query("openid profile email read", &[])).await;
    assert_eq!(redirect["state"], "st-123");
    assert_eq!(redirect["iss"], s.base);
    let session = b.cookies.get("tessera_session").expect("a session cookie").clone();
    assert!(
        !session.contains("alice"),
        "the session cookie is signed and encoded, not a name"
    );

    let r = exchange(&s, &redirect["code"], VERIFIER).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let access = token(&r, "access_token");
    let refresh_token = token(&r, "refresh_token");
    assert_eq!(r.json["scope"], "openid profile email read");
    let id = jwt_payload(&token(&r, "id_token"));
    assert_eq!(id["iss"], s.base);
    assert_eq!(id["aud"], "demo-client");
    assert_eq!(id["nonce"], "n-456");
    assert!(id["auth_time"].as_u64().unwrap() <= id["iat"].as_u64().unwrap());
    assert_eq!(id["exp"].as_u64().unwrap() - id["iat"].as_u64().unwrap(), 3600);
    let at_hash = URL_SAFE_NO_PAD.encode(&<sha2::Sha256 as sha2::Digest>::digest(access.as_bytes())[..16]);
    assert_eq!(id["at_hash"], at_hash);

    let intro = s.introspect(&access).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["username"], "alice");
    assert_eq!(intro["sub"], id["sub"]);
    assert_eq!(intro["client_id"], "demo-client");
    let intro = s.introspect(&refresh_token).await;
    assert_eq!(
        (intro["active"].clone(), intro["token_type"].clone()),
        (true.into(), "refresh_token".into())
    );

    // The consent is remembered: the same request, or a smaller one, goes straight back.
    let again = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid read", &[])))
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    assert!(query_of(again.header("location").unwrap()).contains_key("code"));
    // A scope not yet approved asks again, and prompt=consent always asks.
    let more = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid write", &[])))
        .await;
    assert!(
        more.status == StatusCode::OK && more.text.contains("Change your data"),
        "{}",
        more.text
    );
    let asked = b
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query("openid", &[("prompt", "consent")])
        ))
        .await;
    assert!(asked.status == StatusCode::OK && asked.text.contains("Allow"));
    s.stop().await;
}

#[actix_rt::test]
async fn codes_are_single_use_and_a_replay_revokes_what_they_gave() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let code = b.approve(&authorize_query("openid read", &[])).await["code"].clone();
    let first = exchange(&s, &code, VERIFIER).await;
    let (access, refresh_token) = (token(&first, "access_token"), token(&first, "refresh_token"));
    assert_eq!(s.introspect(&access).await["active"], true);

    let replay = exchange(&s, &code, VERIFIER).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json["error"], "invalid_grant");
    assert_eq!(
        s.introspect(&access).await["active"],
        false,
        "the replay revoked the access token"
    );
    assert_eq!(s.introspect(&refresh_token).await["active"], false);
    assert_eq!(refresh(&s, &refresh_token, None).await.json["error"], "invalid_grant");
    s.stop().await;
}

#[actix_rt::test]
async fn the_code_grant_checks_client_redirect_and_verifier() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    // A wrong verifier burns the code (no second guess); so do a wrong redirect URI.
    let code = b.approve(&authorize_query("openid", &[])).await["code"].clone();
    let wrong = exchange(&s, &code, &VERIFIER.replace('a', "b")).await;
    assert_eq!(
        (wrong.status, wrong.json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(exchange(&s, &code, VERIFIER).await.json["error"], "invalid_grant");

    let code = b.approve(&authorize_query("openid", &[])).await["code"].clone();
    let r = s
        .post_form(
            "/oauth/token",
            DEMO,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:3001/other"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.json["error"], "invalid_grant");

    // Another client cannot redeem the code, and trying does not burn it.
    let code = b.approve(&authorize_query("openid", &[])).await["code"].clone();
    let stolen = s
        .post_form(
            "/oauth/token",
            Some(("other-client", "other-secret")),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(stolen.json["error"], "invalid_grant");
    token(&exchange(&s, &code, VERIFIER).await, "access_token");

    // Missing parameters are invalid_request; a made-up code is invalid_grant.
    let r = s
        .post_form(
            "/oauth/token",
            DEMO,
            &[("grant_type", "authorization_code"), ("code", "x")],
        )
        .await;
    assert_eq!(r.json["error"], "invalid_request");
    assert_eq!(
        exchange(&s, "tsc_made_up", VERIFIER).await.json["error"],
        "invalid_grant"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let code = b.approve(&authorize_query("openid read write", &[])).await["code"].clone();
    let first = exchange(&s, &code, VERIFIER).await;
    let r0 = token(&first, "refresh_token");

    let second = refresh(&s, &r0, Some("openid read")).await;
    let (a1, r1) = (token(&second, "access_token"), token(&second, "refresh_token"));
    assert_ne!(r1, r0, "every refresh returns a new refresh token");
    assert_eq!(second.json["scope"], "openid read", "a refresh may narrow the scope");
    assert!(second.json["id_token"].is_string());
    assert_eq!(
        s.introspect(&r0).await["active"],
        false,
        "the used refresh token is inactive"
    );
    assert_eq!(s.introspect(&a1).await["username"], "alice");

    // The new refresh token keeps the grant's scope (RFC 6749 §6): only the access token narrowed.
    assert_eq!(s.introspect(&a1).await["scope"], "openid read");
    assert_eq!(s.introspect(&r1).await["scope"], "openid read write");
    let wider = refresh(&s, &r1, Some("openid read write email")).await;
    assert_eq!(
        wider.json["error"], "invalid_scope",
        "never wider than the grant: {}",
        wider.text
    );
    // The refused request did not spend r1, and the whole grant may be asked for again.
    let third = refresh(&s, &r1, Some("openid read write")).await;
    let (a2, r2) = (token(&third, "access_token"), token(&third, "refresh_token"));
    assert_eq!(third.json["scope"], "openid read write");
    assert_eq!(s.introspect(&a2).await["scope"], "openid read write");

    // Reusing r0 (already exchanged) revokes every token of the grant, however far it went.
    let reuse = refresh(&s, &r0, None).await;
    assert_eq!(reuse.json["error"], "invalid_grant");
    for t in [&a1, &a2, &r2] {
        assert_eq!(s.introspect(t).await["active"], false);
    }
    assert_eq!(s.introspect(&token(&first, "access_token")).await["active"], false);
    assert_eq!(refresh(&s, &r2, None).await.json["error"], "invalid_grant");

    // Another client cannot use demo-client's refresh token.
    let code = b.approve(&authorize_query("openid", &[])).await["code"].clone();
    let r = token(&exchange(&s, &code, VERIFIER).await, "refresh_token");
    let other = s
        .post_form(
            "/oauth/token",
            Some(("other-client", "other-secret")),
            &[("grant_type", "refresh_token"), ("refresh_token", &r)],
        )
        .await;
    assert_eq!(
        other.json["error"], "unauthorized_client",
        "other-client may not refresh at all"
    );
    token(&refresh(&s, &r, None).await, "access_token");
    s.stop().await;
}

#[actix_rt::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens() {
    let s = TestServer::start("refresh_token_ttl_secs = 0").await;
    let mut b = Browser::new(&s);
    let code = b.approve(&authorize_query("openid read", &[])).await["code"].clone();
    let r = exchange(&s, &code, VERIFIER).await;
    let (access, refresh_token) = (token(&r, "access_token"), token(&r, "refresh_token"));
    let intro = s.introspect(&refresh_token).await;
    assert_eq!(intro["active"], true);
    assert!(
        intro.get("exp").is_none(),
        "refresh_token_ttl_secs = 0: no expiry: {intro}"
    );

    let revoked = s.post_form("/oauth/revoke", DEMO, &[("token", &refresh_token)]).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(s.introspect(&refresh_token).await["active"], false);
    assert_eq!(s.introspect(&access).await["active"], false, "RFC 7009 §2.1");
    s.stop().await;
}

#[actix_rt::test]
async fn authorization_errors_show_a_page_or_redirect_with_state() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    // Never redirect to an unknown client or an unregistered URI.
    for query in [
        authorize_query("openid", &[("client_id", "nobody")]),
        authorize_query("openid", &[("redirect_uri", "http://127.0.0.1:3001/callback/")]),
        authorize_query("openid", &[("redirect_uri", "https://evil.example/cb")]),
        authorize_query("openid", &[("client_id", "")]),
        "client_id=demo-client&client_id=demo-client".to_owned(),
    ] {
        let r = b.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(r.header("location").is_none());
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.ends_with("; form-action 'self'"), "{query}: {csp}");
    }
    // Everything else goes back to the client with state.
    let plain = challenge(VERIFIER);
    for (extra, error) in [
        (
            vec![("code_challenge_method", "plain"), ("code_challenge", plain.as_str())],
            "invalid_request",
        ),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "none")], "login_required"),
    ] {
        let r = b
            .get(&format!("/oauth/authorize?{}", authorize_query("openid", &extra)))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{extra:?}: {}", r.text);
        let q = query_of(r.header("location").unwrap());
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str(), q.get("iss")),
            (error, "st-123", Some(&s.base)),
            "{extra:?}: error redirects carry iss too (RFC 9207 §2)"
        );
    }
    s.stop().await;
}

#[actix_rt::test]
async fn denying_consent_redirects_with_access_denied() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let login = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid", &[])))
        .await;
    let signed_in = b
        .submit(&login, &[("username", "alice"), ("password", "wonderland-42")])
        .await;
    let consent = b.get(signed_in.header("location").unwrap()).await;
    // The consent form's 303 goes to the client, so its CSP lets forms lead there, and no further.
    let csp = consent.header("content-security-policy").unwrap();
    assert!(csp.ends_with("; form-action 'self' http://127.0.0.1:3001"), "{csp}");
    let denied = b.submit(&consent, &[("decision", "deny")]).await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    let q = query_of(denied.header("location").unwrap());
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "st-123"));
    assert_eq!(q.get("iss"), Some(&s.base));
    assert!(!q.contains_key("code"));
    s.stop().await;
}

#[actix_rt::test]
async fn forms_need_their_csrf_token() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let login = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid", &[])))
        .await;
    let mut fields = common::browser::hidden_inputs(&login.text);
    fields.retain(|(k, _)| k != "csrf");
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "wonderland-42".into()));
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = b.post("/oauth/login", &pairs).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("tessera_session"));
    // With the field but from another browser (no CSRF cookie): refused too.
    let mut other = Browser::new(&s);
    let r = other
        .submit(&login, &[("username", "alice"), ("password", "wonderland-42")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[actix_rt::test]
async fn wrong_passwords_are_throttled_without_naming_users() {
    let s = TestServer::start("login_lockout_after = 3\nlogin_lockout_secs = 60").await;
    let mut b = Browser::new(&s);
    let login = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid", &[])))
        .await;
    let wrong = b
        .submit(&login, &[("username", "alice"), ("password", "wrong-pass")])
        .await;
    let unknown = b
        .submit(&login, &[("username", "nobody"), ("password", "wrong-pass")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let message = |r: &common::Reply| r.text.split("role=\"alert\">").nth(1).map(|m| m[..40].to_owned());
    assert_eq!(
        message(&wrong),
        message(&unknown),
        "the same words for a wrong password and an unknown user"
    );
    for _ in 0..2 {
        b.submit(&login, &[("username", "alice"), ("password", "wrong-pass")])
            .await;
    }
    let locked = b
        .submit(&login, &[("username", "alice"), ("password", "wonderland-42")])
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.text);
    assert!(locked.header("retry-after").is_some());
    assert!(
        !b.cookies.contains_key("tessera_session"),
        "even the right password waits out the lock"
    );
    assert!(locked.text.contains("Too many failed sign-ins"));
    s.stop().await;
}
