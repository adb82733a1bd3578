//! Tests of the demo client's routes through actix-web's test service, against a mock Tessera
//! and a mock API served on an ephemeral port of 127.0.0.1: the whole sign-in, call, refresh,
//! revoke and sign-out sequence, and the refusals (wrong state, missing or forged CSRF token,
//! unknown session, garbled input) and outages that must give a page rather than a 500.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{test, web, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::protocol::{basic_auth, pkce_challenge};
use super::session::Tokens;
use super::*;

const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:3001/callback";

fn config(tessera_url: &str, api_url: &str) -> DemoClientConfig {
    DemoClientConfig {
        tessera_url: tessera_url.to_owned(),
        api_url: api_url.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_uri: REDIRECT_URI.to_owned(),
        scope: "openid profile email read write offline_access".to_owned(),
    }
}

/// An address nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// The test service plus the browser's session cookie, carried from answer to answer.
/// `to_request` is always `TestRequest::to_request`; holding it lets the request type be inferred
/// (actix-web does not re-export it, and naming it would take a dependency on actix-http).
struct Browser<S, R> {
    app: S,
    to_request: fn(test::TestRequest) -> R,
    cookie: Option<String>,
}

impl<S, R, B> Browser<S, R>
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    async fn send(&mut self, req: test::TestRequest) -> (StatusCode, HashMap<String, String>, String) {
        let req = match &self.cookie {
            Some(id) => req.cookie(actix_web::cookie::Cookie::new(handlers::SESSION_COOKIE, id.clone())),
            None => req,
        };
        let resp = test::call_service(&self.app, (self.to_request)(req)).await;
        if let Some(c) = resp.response().cookies().find(|c| c.name() == handlers::SESSION_COOKIE) {
            let header = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join("; ");
            assert!(
                header.contains("HttpOnly") && header.contains("SameSite=Lax"),
                "{header}"
            );
            self.cookie = (!c.value().is_empty()).then(|| c.value().to_owned());
        }
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        (status, headers, body)
    }

    async fn get(&mut self, uri: &str) -> (StatusCode, HashMap<String, String>, String) {
        self.send(test::TestRequest::get().uri(uri)).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> (StatusCode, HashMap<String, String>, String) {
        self.send(test::TestRequest::post().uri(uri).set_form(form)).await
    }
}

fn query_params(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    web::Query::<HashMap<String, String>>::from_query(query)
        .unwrap()
        .into_inner()
}

/// The text of the element with this id (up to the next tag), if the page has it.
fn element(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let open_end = rest.find('>')? + 1;
    let close = rest[open_end..].find('<')?;
    Some(rest[open_end..open_end + close].to_owned())
}

fn csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[actix_web::test]
async fn signed_out_home_offers_sign_in_with_safe_headers() {
    let state = web::Data::new(AppState::new(config(&closed_port_url(), &closed_port_url())).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state)).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };
    let (status, headers, body) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"id="sign-in""#));
    assert!(body.contains(r#"href="/login""#));
    assert!(!body.contains(r#"id="access-token""#));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"].contains("frame-ancestors 'none'"));

    let (status, _, body) = browser.get("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains(r#"id="error""#));
}

#[actix_web::test]
async fn login_redirects_to_tessera_with_pkce_and_fresh_secrets() {
    let state = web::Data::new(AppState::new(config("http://tessera.test:4000/", &closed_port_url())).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state.clone())).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };
    let (status, headers, _) = browser.get("/login").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = &headers["location"];
    assert!(
        location.starts_with("http://tessera.test:4000/oauth/authorize?"),
        "{location}"
    );
    let params = query_params(location);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], REDIRECT_URI);
    assert_eq!(params["scope"], "openid profile email read write offline_access");
    assert_eq!(params["code_challenge_method"], "S256");
    let id = browser.cookie.clone().expect("a session cookie");
    assert_eq!(id.len(), 43);
    let pending = state
        .sessions
        .with(&id, Instant::now(), |s| s.pending.clone())
        .flatten()
        .unwrap();
    assert_eq!(params["state"], pending.state);
    assert_eq!(params["nonce"], pending.nonce);
    assert_eq!(params["code_challenge"], pkce_challenge(&pending.verifier));
    assert!(pending.verifier.len() >= 43);
    assert!(
        !location.contains(&pending.verifier),
        "the verifier stays on the server"
    );

    // A second sign-in in the same browser reuses the session with new secrets.
    let (_, headers, _) = browser.get("/login").await;
    assert_eq!(browser.cookie.as_deref(), Some(id.as_str()));
    assert_ne!(query_params(&headers["location"])["state"], params["state"]);
}

#[actix_web::test]
async fn callback_with_a_wrong_state_is_refused_without_contacting_tessera() {
    let tessera = TcpListener::bind("127.0.0.1:0").unwrap();
    tessera.set_nonblocking(true).unwrap();
    let tessera_url = format!("http://{}", tessera.local_addr().unwrap());
    let state = web::Data::new(AppState::new(config(&tessera_url, &closed_port_url())).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state)).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };

    let (status, _, body) = browser.get("/callback?code=abc&state=whatever").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no session at all");
    assert!(body.contains(r#"id="error""#));

    let (_, headers, _) = browser.get("/login").await;
    let right_state = query_params(&headers["location"])["state"].clone();
    let wrong_state = format!("{}x", &right_state[..42]);
    let (status, _, body) = browser.get(&format!("/callback?code=abc&state={wrong_state}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(element(&body, "error").unwrap().contains("state does not match"));
    let (status, _, _) = browser.get("/callback?code=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a missing state is refused too");

    // The refused reply used up the sign-in: even the right state is not accepted afterwards.
    let (status, _, body) = browser.get(&format!("/callback?code=abc&state={right_state}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(element(&body, "error").unwrap().contains("No sign-in is in progress"));

    let (status, _, _) = browser.get("/callback?state=a&state=b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a garbled query");

    match tessera.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("Tessera was contacted: {other:?}"),
    }
}

#[actix_web::test]
async fn posts_without_the_sessions_csrf_token_are_refused() {
    let state = web::Data::new(AppState::new(config(&closed_port_url(), &closed_port_url())).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state.clone())).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };
    let (status, _, body) = browser.post("/refresh", &[("csrf", "anything")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no session");
    assert!(body.contains(r#"id="error""#));

    browser.get("/login").await;
    let id = browser.cookie.clone().unwrap();
    let real = state.sessions.with(&id, Instant::now(), |s| s.csrf.clone()).unwrap();

    for path in ["/refresh", "/revoke", "/logout", "/call/protected", "/call/update"] {
        let (status, _, body) = browser.post(path, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} without a CSRF token");
        assert!(body.contains(r#"id="error""#), "{path}");
        let (status, _, body) = browser.post(path, &[("csrf", "forged")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} with a forged CSRF token");
        assert!(element(&body, "error").unwrap().contains("CSRF"), "{path}");
    }
    // Another session's token is no better than a forged one.
    let other = state.sessions.create(Instant::now());
    let other_csrf = state.sessions.with(&other, Instant::now(), |s| s.csrf.clone()).unwrap();
    let (status, _, _) = browser.post("/logout", &[("csrf", &other_csrf)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        state.sessions.with(&id, Instant::now(), |_| ()).is_some(),
        "not signed out"
    );

    // The session's own token passes (and, with no tokens held, the page says so).
    let (status, headers, _) = browser.post("/refresh", &[("csrf", &real)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    let (_, _, body) = browser.get("/").await;
    assert!(element(&body, "error").unwrap().contains("no refresh token"));
}

#[actix_web::test]
async fn outages_and_error_replies_are_shown_on_the_page() {
    let down = closed_port_url();
    let state = web::Data::new(AppState::new(config(&down, &down)).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state.clone())).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };

    // Tessera answers the authorization request with an error.
    let (_, headers, _) = browser.get("/login").await;
    let st = query_params(&headers["location"])["state"].clone();
    let (status, headers, _) = browser
        .get(&format!(
            "/callback?error=access_denied&error_description=the+user+said+no&state={st}"
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    let (status, _, body) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        element(&body, "error").unwrap(),
        "Tessera did not sign you in: access_denied: the user said no"
    );
    assert!(body.contains(r#"id="sign-in""#));

    // Tessera is down when the code is exchanged.
    let (_, headers, _) = browser.get("/login").await;
    let st = query_params(&headers["location"])["state"].clone();
    let (status, _, _) = browser.get(&format!("/callback?code=abc&state={st}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, body) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        element(&body, "error")
            .unwrap()
            .contains("Tessera could not be reached"),
        "{body}"
    );

    // The API is down when called.
    let id = browser.cookie.clone().unwrap();
    let csrf = state
        .sessions
        .with(&id, Instant::now(), |s| {
            s.tokens = Some(Tokens {
                access_token: "at".into(),
                token_type: "Bearer".into(),
                refresh_token: None,
                id_token: None,
                scope: "read".into(),
                expires_in: Some(60),
                obtained_at: Instant::now(),
                revoked: false,
            });
            s.csrf.clone()
        })
        .unwrap();
    let (status, _, _) = browser.post("/call/data", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, body) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(element(&body, "error")
        .unwrap()
        .contains("The demo API could not be reached"));
    assert_eq!(element(&body, "api-path").as_deref(), Some("/api/data"));
    assert_eq!(element(&body, "api-status"), None, "no HTTP status without an answer");

    let (status, _, _) = browser.post("/call/nonsense", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A token request as the mock saw it: the Authorization header and the form.
type TokenRequest = (Option<String>, HashMap<String, String>);

/// What the mock Tessera and API have seen and issued.
#[derive(Default)]
struct Mock {
    token_requests: Mutex<Vec<TokenRequest>>,
    issued: Mutex<u32>,
    live_refresh: Mutex<HashSet<String>>,
    revoked: Mutex<Vec<(String, String)>>,
}

fn id_token() -> String {
    let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"mock","sub":"alice","aud":"demo-client"}"#);
    format!("eyJhbGciOiJub25lIn0.{payload}.c2ln")
}

async fn mock_token(mock: web::Data<Mock>, req: HttpRequest, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let form = form.into_inner();
    mock.token_requests.lock().unwrap().push((auth.clone(), form.clone()));
    if auth.as_deref() != Some(basic_auth(CLIENT_ID, CLIENT_SECRET).as_str()) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "invalid_client"}));
    }
    let valid = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => form.get("code").map(String::as_str) == Some("good-code"),
        Some("refresh_token") => mock.live_refresh.lock().unwrap().remove(&form["refresh_token"]),
        _ => false,
    };
    if !valid {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "invalid_grant", "error_description": "no such grant"}));
    }
    let n = {
        let mut issued = mock.issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    let refresh = format!("rt-{n}-full-refresh-token");
    mock.live_refresh.lock().unwrap().insert(refresh.clone());
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": format!("at-{n}-full-access-token"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "openid read write offline_access",
        "refresh_token": refresh,
        "id_token": id_token(),
    }))
}

async fn mock_revoke(mock: web::Data<Mock>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    mock.live_refresh.lock().unwrap().remove(&form["token"]);
    mock.revoked
        .lock()
        .unwrap()
        .push((form["token"].clone(), form["token_type_hint"].clone()));
    HttpResponse::Ok().finish()
}

async fn mock_api(mock: web::Data<Mock>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let revoked = mock.revoked.lock().unwrap().iter().any(|(t, _)| *t == token);
    if !token.starts_with("at-") || revoked {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
            .json(serde_json::json!({"error": "invalid_token", "error_description": "inactive"}));
    }
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    HttpResponse::Ok().json(serde_json::json!({"path": req.path(), "received": sent, "note": "<script>"}))
}

#[actix_web::test]
async fn sign_in_call_refresh_revoke_and_sign_out_against_a_mock_tessera() {
    let mock = web::Data::new(Mock::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let server = {
        let mock = mock.clone();
        HttpServer::new(move || {
            actix_web::App::new()
                .app_data(mock.clone())
                .route("/oauth/token", web::post().to(mock_token))
                .route("/oauth/revoke", web::post().to(mock_revoke))
                .route("/api/{tail:.*}", web::to(mock_api))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run()
    };
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let state = web::Data::new(AppState::new(config(&base, &base)).unwrap());
    let mut browser = Browser {
        app: test::init_service(app(state.clone())).await,
        to_request: test::TestRequest::to_request,
        cookie: None,
    };

    // Sign in.
    let (_, headers, _) = browser.get("/login").await;
    let authorize = query_params(&headers["location"]);
    let before = browser.cookie.clone().unwrap();
    let (status, headers, _) = browser
        .get(&format!(
            "/callback?code=good-code&state={}&iss=mock",
            authorize["state"]
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    assert_ne!(
        browser.cookie.as_deref(),
        Some(before.as_str()),
        "the session id rotates at sign-in"
    );
    {
        let requests = mock.token_requests.lock().unwrap();
        let (auth, form) = &requests[0];
        assert_eq!(auth.as_deref(), Some(basic_auth(CLIENT_ID, CLIENT_SECRET).as_str()));
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "good-code");
        assert_eq!(form["redirect_uri"], REDIRECT_URI);
        assert_eq!(pkce_challenge(&form["code_verifier"]), authorize["code_challenge"]);
        assert!(!form.contains_key("client_secret"), "client_secret_basic only");
    }

    let (status, _, page) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(element(&page, "notice").as_deref(), Some("Signed in."));
    assert_eq!(element(&page, "access-token").as_deref(), Some("at-1-ful…"));
    assert_eq!(element(&page, "refresh-token").as_deref(), Some("rt-1-ful…"));
    assert_eq!(
        element(&page, "scope").as_deref(),
        Some("openid read write offline_access")
    );
    assert!(!page.contains("full-access-token") && !page.contains("full-refresh-token"));
    assert!(!page.contains(&id_token()), "the ID token is not on the page");
    assert!(element(&page, "id-token-claims").unwrap().contains("alice"));
    let csrf = csrf(&page);

    // Call the API; the response body is escaped.
    browser.post("/call/protected", &[("csrf", &csrf)]).await;
    let (_, _, page) = browser.get("/").await;
    assert_eq!(element(&page, "api-status").as_deref(), Some("200"));
    assert_eq!(element(&page, "api-method").as_deref(), Some("GET"));
    assert!(element(&page, "api-body").unwrap().contains("/api/protected"));
    assert!(!page.contains("<script>"));

    browser
        .post(
            "/call/update",
            &[("csrf", &csrf), ("display_name", "Alice L."), ("bio", "")],
        )
        .await;
    let (_, _, page) = browser.get("/").await;
    assert_eq!(element(&page, "api-method").as_deref(), Some("POST"));
    assert_eq!(element(&page, "api-path").as_deref(), Some("/api/user/update"));
    let body = element(&page, "api-body").unwrap();
    assert!(
        body.contains("display_name") && body.contains("Alice L.") && !body.contains("bio"),
        "{body}"
    );

    // Refresh: the refresh token rotates, and the new one is the one used next time.
    browser.post("/refresh", &[("csrf", &csrf)]).await;
    let (_, _, page) = browser.get("/").await;
    assert!(element(&page, "notice").unwrap().contains("rotated"), "{page}");
    assert_eq!(element(&page, "access-token").as_deref(), Some("at-2-ful…"));
    assert_eq!(element(&page, "refresh-token").as_deref(), Some("rt-2-ful…"));
    browser.post("/refresh", &[("csrf", &csrf)]).await;
    let (_, _, page) = browser.get("/").await;
    assert_eq!(element(&page, "refresh-token").as_deref(), Some("rt-3-ful…"));
    assert_eq!(
        mock.token_requests.lock().unwrap()[2].1["refresh_token"],
        "rt-2-full-refresh-token"
    );

    // Revoke both tokens; the client keeps the access token and the API refuses it.
    browser.post("/revoke", &[("csrf", &csrf)]).await;
    assert_eq!(
        *mock.revoked.lock().unwrap(),
        vec![
            ("rt-3-full-refresh-token".to_owned(), "refresh_token".to_owned()),
            ("at-3-full-access-token".to_owned(), "access_token".to_owned()),
        ]
    );
    let (_, _, page) = browser.get("/").await;
    assert!(element(&page, "token-status").is_some() && page.contains("revoked at Tessera"));
    browser.post("/call/profile", &[("csrf", &csrf)]).await;
    let (_, _, page) = browser.get("/").await;
    assert_eq!(element(&page, "api-status").as_deref(), Some("401"));
    assert!(element(&page, "api-www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert!(element(&page, "api-body").unwrap().contains("invalid_token"));

    // Refreshing a revoked refresh token fails, and the page says how.
    browser.post("/refresh", &[("csrf", &csrf)]).await;
    let (_, _, page) = browser.get("/").await;
    assert_eq!(
        element(&page, "error").as_deref(),
        Some("Refreshing failed. Tessera refused: HTTP 400, invalid_grant: no such grant")
    );

    // Sign out: the session is gone and the browser goes to Tessera's logout with the hint.
    let session = browser.cookie.clone().unwrap();
    let (status, headers, _) = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = &headers["location"];
    assert!(location.starts_with(&format!("{base}oauth/logout?")), "{location}");
    let params = query_params(location);
    assert_eq!(params["id_token_hint"], id_token());
    assert_eq!(params["post_logout_redirect_uri"], "http://127.0.0.1:3001/");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(browser.cookie, None, "the cookie is cleared");
    assert!(state.sessions.with(&session, Instant::now(), |_| ()).is_none());
    browser.cookie = Some(session);
    let (_, _, page) = browser.get("/").await;
    assert!(page.contains(r#"id="sign-in""#), "an old cookie is signed out");

    handle.stop(false).await;
}
