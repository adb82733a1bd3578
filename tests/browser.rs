//! A real browser on the real login page: headless Chromium, driven by playwright-core
//! (tests/browser/login.mjs), signs in as alice, approves consent and lands on the client's
//! redirect URI with a code that the token endpoint accepts; a wrong password is refused.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium` or `$CHROMIUM`) and tests/browser/node_modules:
//! `scripts/test.sh` installs them. Without them these tests fail, they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use awc::http::StatusCode;
use common::browser::{authorize_query, query_of, REDIRECT, VERIFIER};
use common::TestServer;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// Panics, naming what is missing and how to get it, unless node, Chromium and playwright-core
/// are all there.
fn require_browser_tools() {
    let mut missing = Vec::new();
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("`node` on PATH".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!("Chromium at {}", chromium().display()));
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules/playwright-core".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser tests need {}: run scripts/test.sh, which installs them",
        missing.join(", ")
    );
}

/// Runs tests/browser/login.mjs on `url` (off the server's thread, which keeps serving) and
/// returns the JSON line it prints.
async fn browser_sign_in(url: String, username: &'static str, password: &'static str) -> Value {
    require_browser_tools();
    let out = actix_rt::task::spawn_blocking(move || {
        Command::new("node")
            .args(["tests/browser/login.mjs", &url, username, password])
            .current_dir(ROOT)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "login.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("login.mjs printed no JSON ({e}):\n{stdout}\n{stderr}"))
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
