//! A real browser on the real login page: headless Chromium, driven by playwright-core
//! (tests/browser/login.mjs), signs in as alice, approves consent and lands on the client's
//! redirect URI with a code that the token endpoint accepts; a wrong password is refused.
//!
//! Needs node, Chromium and playwright-core (see tests/common/node.rs); they never skip.

use crate::common;

use awc::http::StatusCode;
use common::browser::{authorize_query, query_of, REDIRECT, VERIFIER};
use common::TestServer;
use serde_json::Value;

/// Runs tests/browser/login.mjs on `url` and returns the JSON line it prints.
async fn browser_sign_in(url: String, username: &str, password: &str) -> Value {
    common::node::run_script("login.mjs", vec![url, username.to_owned(), password.to_owned()]).await
}

fn authorize_url(s: &TestServer) -> String {
    s.url(&format!("/oauth/authorize?{}", authorize_query("openid profile", &[])))
}

#[actix_rt::test]
async fn a_real_browser_signs_in_and_reaches_the_redirect_uri_with_a_code() {
    let s = TestServer::start("").await;
    let result = browser_sign_in(authorize_url(&s), "alice", "wonderland-42").await;
    assert_eq!(result["outcome"], "redirected", "{result}");
    let url = result["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{REDIRECT}?")), "{url}");
    let query = query_of(url);
    assert_eq!(query.get("state").map(String::as_str), Some("st-123"), "{url}");
    assert_eq!(query.get("iss"), Some(&s.base), "{url}");
    let code = query.get("code").expect("a code in the redirect");

    // The code is a real one: the token endpoint exchanges it, with the PKCE verifier.
    let r = s
        .post_form(
            "/oauth/token",
            Some(("demo-client", "demo-secret")),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        r.text
    );
    assert_eq!(r.json["scope"], "openid profile", "{}", r.text);
    s.stop().await;
}

#[actix_rt::test]
async fn a_real_browser_is_refused_a_wrong_password() {
    let s = TestServer::start("").await;
    let result = browser_sign_in(authorize_url(&s), "alice", "not-the-password").await;
    assert_eq!(result["outcome"], "refused", "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(message.contains("incorrect"), "{message}");
    s.stop().await;
}
