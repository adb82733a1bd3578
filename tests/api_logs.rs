//! The resource server and the demo client keep tokens and secrets out of their logs: every
//! event of every crate in this process, at trace level, is captured while a browser-less
//! client walks the whole demo (sign-in through the demo client, its API calls, refresh and
//! revoke; direct API calls with a bad body, a refresh token, an unknown token; a dead Tessera),
//! then searched for each token, code, secret and credential it knows, and for anything shaped
//! like one of Tessera's tokens (the demo client's own tokens are never seen by the test).
//!
//! One test in this binary: it installs the process's log subscriber.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::api::{config, ApiServer};
use common::browser::{self, Browser};
use common::TestServer;
use tessera_api::demo_client::{self, DemoClientConfig};
use tessera_api::ResourceServerConfig;

#[actix_rt::test]
async fn no_token_or_secret_reaches_the_log_at_trace_level() {
    let captured = common::CapturedLog::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let tessera = TestServer::start("").await;
    let api = ApiServer::start(config(&tessera.base, Duration::from_millis(200))).await;
    // Tokens from a real sign-in, and one from client credentials.
    let mut b = Browser::new(&tessera);
    let code = b
        .approve(&browser::authorize_query("openid read write offline_access", &[]))
        .await["code"]
        .clone();
    let tokens = tessera.exchange_code(&code, browser::VERIFIER).await.json;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let client_token = tessera.issue("read").await;

    assert_eq!(api.get("/api/user/profile", Some(&access)).await.status, 200);
    assert_eq!(
        api.post_json("/api/user/update", Some(&access), "{broken").await.status,
        400
    );
    assert_eq!(api.get("/api/data", Some(&client_token)).await.status, 200);
    assert_eq!(api.get("/api/protected", Some(&refresh)).await.status, 401);
    assert_eq!(
        api.get("/api/protected", Some("tsa_made_up_token_value")).await.status,
        401
    );
    tessera.revoke(&access).await;
    actix_rt::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(api.get("/api/protected", Some(&access)).await.status, 401);

    let demo_code = walk_the_demo_client(&tessera, &api).await;

    // An API whose Tessera is gone: its failures are logged, without what it sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let orphan = ApiServer::start(ResourceServerConfig {
        breaker_failures: 1,
        ..config(&dead, Duration::from_secs(5))
    })
    .await;
    assert_eq!(orphan.get("/api/protected", Some(&client_token)).await.status, 503);

    let log = captured.text();
    assert!(
        log.contains("token introspection failed"),
        "the failure was logged (so the log was captured)"
    );
    assert!(log.contains("TRACE"), "trace-level events were captured");
    assert!(
        log.contains("reqwest"),
        "the HTTP client's own log records were captured"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("api-server:api-secret");
    for (what, secret) in [
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("client-credentials token", client_token.as_str()),
        ("made-up token", "tsa_made_up_token_value"),
        ("authorization code", code.as_str()),
        ("demo client's authorization code", demo_code.as_str()),
        ("PKCE verifier", browser::VERIFIER),
        ("resource server secret", "api-secret"),
        ("client secret", "demo-secret"),
        ("Basic credentials", basic.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} reached the log");
    }
    assert_eq!(
        token_shaped(&format!("a {access} and {refresh}")).len(),
        2,
        "the detector sees tokens"
    );
    assert_eq!(
        token_shaped(&log),
        Vec::<String>::new(),
        "token-shaped strings in the log"
    );
}

/// The starts of anything in `text` shaped like a Tessera token: `tsa_`, `tsr_` or `tsc_` and
/// at least 16 base64url characters.
fn token_shaped(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["tsa_", "tsr_", "tsc_"] {
        for (at, _) in text.match_indices(prefix) {
            let body = text[at + 4..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                .count();
            if body >= 16 {
                found.push(text[at..at + 12].to_owned());
            }
        }
    }
    found
}

/// The demo client's session cookie from a reply, if it set one.
fn session_cookie(reply: &common::Reply) -> Option<String> {
    reply.headers.get_all("set-cookie").find_map(|v| {
        let pair = v.to_str().ok()?.split(';').next()?;
        pair.strip_prefix("demo_session=")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    })
}

/// Signs in through the demo client (its /login, Tessera's pages, its /callback), then has it
/// call the API, refresh and revoke. Returns the code Tessera gave the demo client.
async fn walk_the_demo_client(tessera: &TestServer, api: &ApiServer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The registered redirect URI: Tessera's redirect is not followed, the test carries the
    // code to this demo client's real address.
    let server = demo_client::start(
        DemoClientConfig {
            tessera_url: tessera.base.clone(),
            api_url: api.base.clone(),
            client_id: "demo-client".into(),
            client_secret: "demo-secret".into(),
            redirect_uri: browser::REDIRECT.into(),
            scope: "openid profile read write offline_access".into(),
        },
        listener,
    )
    .unwrap();
    actix_rt::spawn(server);
    let http = awc::Client::builder().disable_redirects().finish();
    let send = |req: awc::ClientRequest, cookie: &str| req.insert_header(("cookie", format!("demo_session={cookie}")));

    let login = common::Reply::read(http.get(format!("{base}/login")).send().await.unwrap()).await;
    assert_eq!(login.status, 303, "{}", login.text);
    let mut cookie = session_cookie(&login).expect("a session cookie");
    let authorize = login.header("location").unwrap();
    let query = authorize.split_once('?').unwrap().1;
    let answer = Browser::new(tessera).approve(query).await;
    let callback = format!("{base}/callback?{}", serde_urlencoded::to_string(&answer).unwrap());
    let back = common::Reply::read(send(http.get(callback), &cookie).send().await.unwrap()).await;
    assert_eq!(back.status, 303, "{}", back.text);
    cookie = session_cookie(&back).unwrap_or(cookie);

    for action in [
        "/call/profile",
        "/call/data",
        "/refresh",
        "/call/protected",
        "/revoke",
        "/call/protected",
    ] {
        let page = common::Reply::read(send(http.get(format!("{base}/")), &cookie).send().await.unwrap()).await;
        let csrf = browser::hidden_inputs(&page.text)
            .into_iter()
            .find(|(name, _)| name == "csrf")
            .expect("a signed-in page with a CSRF token")
            .1;
        let r = common::Reply::read(
            send(http.post(format!("{base}{action}")), &cookie)
                .send_form(&[("csrf", csrf.as_str())])
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 303, "{action}: {}", r.text);
    }
    let page = common::Reply::read(send(http.get(format!("{base}/")), &cookie).send().await.unwrap()).await;
    assert!(page.text.contains("id=\"api-status\">"), "the last call is shown");
    answer["code"].clone()
}
