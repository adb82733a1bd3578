//! The whole demo in a real browser: Tessera, the demo API and the demo client on ephemeral
//! ports, and headless Chromium (tests/browser/demo.mjs) clicking through the demo client:
//! sign in, consent, `GET /api/user/profile`, refresh, revoke, and the API's 401 afterwards.
//! Also: what the browser ends up holding (no tokens anywhere) and what the pages show
//! (shortened tokens only).
//!
//! Needs node, Chromium and playwright-core (see tests/common/node.rs); it never skips.

use crate::common;

use std::time::Duration;

use common::api::{config, ApiServer};
use common::TestServer;
use tessera_api::demo_client::{self, DemoClientConfig};

/// The API's cache TTL here: short, so that a revoked token is refused within the test.
const CACHE_TTL: Duration = Duration::from_millis(300);

#[actix_rt::test]
async fn a_browser_signs_in_through_the_demo_client_calls_the_api_refreshes_and_revokes() {
    // The demo client's port first: Tessera must know its redirect URI.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client_base = format!("http://{}", listener.local_addr().unwrap());
    let tessera = TestServer::start(&format!(
        r#"
[[clients]]
client_id = "browser-demo"
client_secret = "browser-demo-secret"
redirect_uris = ["{client_base}/callback"]
post_logout_redirect_uris = ["{client_base}/"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "read", "write", "offline_access"]
"#
    ))
    .await;
    let api = ApiServer::start(config(&tessera.base, CACHE_TTL)).await;
    let server = demo_client::start(
        DemoClientConfig {
            tessera_url: tessera.base.clone(),
            api_url: api.base.clone(),
            client_id: "browser-demo".into(),
            client_secret: "browser-demo-secret".into(),
            redirect_uri: format!("{client_base}/callback"),
            scope: "openid profile email read write offline_access".into(),
        },
        listener,
    )
    .unwrap();
    actix_rt::spawn(server);

    let wait_after_revoke = (CACHE_TTL * 2).as_millis().to_string();
    let r = common::node::run_script(
        "demo.mjs",
        vec![
            format!("{client_base}/"),
            "alice".into(),
            "wonderland-42".into(),
            wait_after_revoke,
        ],
    )
    .await;

    // Signed in, back on the demo client, with shortened tokens.
    let signed_in = &r["signedIn"];
    assert!(signed_in["url"].as_str().unwrap().starts_with(&client_base), "{r}");
    let access = signed_in["access_token"].as_str().unwrap();
    assert!(
        access.starts_with("tsa_") && access.ends_with('…') && access.chars().count() <= 12,
        "{access}"
    );
    assert!(signed_in["refresh_token"].as_str().unwrap().starts_with("tsr_"), "{r}");
    assert_eq!(signed_in["scope"], "openid profile email read write offline_access");

    // The API answered the profile call for alice.
    assert_eq!(r["profile"]["path"], "/api/user/profile", "{r}");
    assert_eq!(r["profile"]["status"], "200", "{r}");
    assert!(
        r["profile"]["body"]
            .as_str()
            .unwrap()
            .contains("\"username\": \"alice\""),
        "{r}"
    );

    // Refresh rotated both tokens, and the new access token works.
    assert_ne!(r["refreshed"]["access_token"], signed_in["access_token"], "{r}");
    assert_ne!(r["refreshed"]["refresh_token"], signed_in["refresh_token"], "{r}");
    assert_eq!(r["profileAfterRefresh"]["status"], "200", "{r}");

    // Revoked at Tessera: once the API's cache TTL is over, the API refuses the access token.
    assert!(r["revoked"]["status"].as_str().unwrap().contains("revoked"), "{r}");
    assert_eq!(r["afterRevoke"]["path"], "/api/protected", "{r}");
    assert_eq!(r["afterRevoke"]["status"], "401", "{r}");
    assert!(
        r["afterRevoke"]["body"].as_str().unwrap().contains("invalid_token"),
        "{r}"
    );

    // The browser holds no token: not in storage, not in cookies, not in any page it was shown.
    assert_eq!(r["storage"]["local"], 0, "{r}");
    assert_eq!(r["storage"]["session"], 0, "{r}");
    let cookies = r["cookies"].as_array().unwrap();
    assert!(!cookies.is_empty(), "the sessions are cookies: {r}");
    for c in cookies {
        assert_eq!(c["token_like"], false, "{c}");
        assert_eq!(c["httpOnly"], true, "{c}");
    }
    assert_eq!(r["leaks"], serde_json::json!([]), "{r}");
}
