//! The `code-flow` scenario: each iteration is one full sign-in by a fresh browser, over HTTP as
//! a browser and a client would do it (see `tests/code_flow.rs`):
//!
//! 1. `GET authorize`: `/oauth/authorize` with PKCE (S256), state and nonce → the login page,
//!    which sets the CSRF cookie;
//! 2. `POST login`: the login form with the account's password → 303 back to the authorization
//!    request, with a session cookie;
//! 3. `GET consent`: that authorization request, now signed in → the consent page (200) the
//!    first time the account signs in, or straight the 303 to the client with a code once the
//!    consent is remembered; `POST consent`: the consent form, allowed → 303 to the client with
//!    a code (only when the page was shown, so its count is the number of consent pages; as
//!    each account's first login usually falls in the ramp-up, whose metrics goose resets, the
//!    report seldom has any, and the campaign prints its own count, ramp-up included, at the end);
//! 4. `POST token: code`: the code and the PKCE verifier → access, refresh and ID tokens;
//! 5. `POST token: refresh`: the refresh token → new tokens.
//!
//! Redirects are never followed (the client's redirect URI has no server behind it): the
//! scenario's users get their own reqwest client, with no redirect policy, when they start.
//! Cookies are kept in a jar that lives for one iteration, so every iteration is a new browser
//! session and a real password check. An unexpected status, or a page, header or field that is
//! missing, fails that request and ends the iteration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use goose::goose::GooseResponse;
use goose::metrics::GooseRequestMetric;
use goose::prelude::*;
use rand::Rng;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};

use crate::pool::{Client, ACCOUNT_PASSWORD};

/// The redirect URI the client signs in with; nothing listens there.
pub const REDIRECT_URI: &str = "http://127.0.0.1:3001/callback";
const SCOPE: &str = "openid profile read offline_access";
const CSRF_COOKIE: &str = "tessera_csrf";
const SESSION_COOKIE: &str = "tessera_session";

/// The accounts users sign in as, and whether each has been seen to consent in this campaign.
struct Accounts {
    names: Vec<String>,
    consented: Vec<AtomicBool>,
}

static ACCOUNTS: OnceLock<Accounts> = OnceLock::new();
/// Iterations that got their tokens (code exchanged), and how many of them showed consent.
static LOGINS: AtomicU64 = AtomicU64::new(0);
static CONSENT_PAGES: AtomicU64 = AtomicU64::new(0);

/// Sets the accounts (`pool::prepare_accounts`), which start with no consent given.
pub fn set_accounts(names: Vec<String>) {
    let consented = names.iter().map(|_| AtomicBool::new(false)).collect();
    ACCOUNTS
        .set(Accounts { names, consented })
        .ok()
        .expect("accounts are prepared once");
}

/// Completed logins, and how many of them went through the consent page; `None` when the
/// scenario did not run.
pub fn summary() -> Option<(u64, u64)> {
    ACCOUNTS.get()?;
    Some((LOGINS.load(Ordering::Relaxed), CONSENT_PAGES.load(Ordering::Relaxed)))
}

/// On start: a client that does not follow redirects (and keeps no cookies: each iteration
/// keeps its own).
pub async fn no_redirects(user: &mut GooseUser) -> TransactionResult {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("tessera-loadtest/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60));
    user.set_client_builder(builder).await.map_err(Box::new)
}

/// The cookies of one browser session.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let Some((name, value)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            self.0.retain(|(n, _)| n != name);
            let expired = value.is_empty() || v.to_ascii_lowercase().contains("max-age=0");
            if !expired {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One answer, read whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }
}

/// What a step sends.
enum Body<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    /// A form sent as the client (HTTP Basic).
    ClientForm(&'a Client, &'a [(&'a str, &'a str)]),
}

/// Sends one step as a named request that must answer `expect`, with the jar's cookies; returns
/// the request (to fail it) and the answer, which `None` when goose has already recorded the
/// request as failed for want of one.
async fn step(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &'static str,
    expect: u16,
    jar: &Jar,
    body: Body<'_>,
) -> Result<(GooseRequestMetric, Option<Reply>), Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    if !jar.0.is_empty() {
        builder = builder.header(COOKIE, jar.header());
    }
    builder = match body {
        Body::None => builder,
        Body::Form(form) => builder.form(form),
        Body::ClientForm(client, form) => builder.basic_auth(&client.id, Some(&client.secret)).form(form),
    };
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .expect_status_code(expect)
        .set_request_builder(builder)
        .build();
    let GooseResponse { request, response } = user.request(request).await?;
    let Ok(response) = response else {
        return Ok((request, None));
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Ok((request, Some(Reply { status, headers, body })))
}

/// Fails `request` with `why` (goose records it under the request's name) and ends the iteration.
fn fail(user: &mut GooseUser, request: &mut GooseRequestMetric, why: &str, reply: &Reply) -> TransactionResult {
    let tag = format!("{} {}: {why}", request.name, reply.status);
    user.set_failure(&tag, request, Some(&reply.headers), Some(&reply.body))
}

fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The S256 PKCE challenge of `verifier` (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    use sha2::Digest as _;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// `pairs` as an `application/x-www-form-urlencoded` query.
fn encode(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://localhost/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// The query parameter `name` of a redirect to the client.
fn query_param(location: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(location).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(html: &str, name: &str) -> Option<String> {
    let start = format!("{name}=\"");
    let from = html.find(&start)? + start.len();
    let len = html[from..].find('"')?;
    Some(html_unescape(&html[from..from + len]))
}

/// Every `<input type="hidden" name=".." value="..">` of one of our pages, unescaped.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            Some((attr(tag, "name")?, attr(tag, "value")?))
        })
        .collect()
}

/// The hidden fields of a page's form, which must include the CSRF token.
fn form_fields(html: &str) -> Option<Vec<(String, String)>> {
    let fields = hidden_inputs(html);
    fields
        .iter()
        .any(|(k, v)| k == "csrf" && !v.is_empty())
        .then_some(fields)
}

/// The string fields `names` of a JSON token response, or the first one missing.
fn token_fields(body: &str, names: &[&'static str]) -> Result<Vec<String>, &'static str> {
    let json: serde_json::Value = serde_json::from_str(body).map_err(|_| "not JSON")?;
    names
        .iter()
        .map(|n| json[n].as_str().map(str::to_owned).ok_or(*n))
        .collect()
}

/// One full sign-in: authorize, login, consent if asked, code exchange, one refresh.
pub async fn code_flow(user: &mut GooseUser) -> TransactionResult {
    let accounts = ACCOUNTS.get().expect("accounts are prepared before goose starts");
    let account = user.weighted_users_index % accounts.names.len();
    let username = accounts.names[account].as_str();
    let client = &crate::pool().issuer_client;
    let mut jar = Jar::default();
    let verifier = random_string(64);
    let state = random_string(16);
    let nonce = random_string(16);
    let challenge = s256(&verifier);

    // 1. The authorization request: a login page, with a CSRF cookie and token.
    let query = encode(&[
        ("response_type", "code"),
        ("client_id", &client.id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", SCOPE),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("nonce", &nonce),
    ]);
    let path = format!("/oauth/authorize?{query}");
    let (mut request, reply) = step(user, GooseMethod::Get, &path, "authorize", 200, &jar, Body::None).await?;
    let Some(reply) = reply else { return Ok(()) };
    jar.keep(&reply.headers);
    if reply.status != 200 || !reply.body.contains("name=\"password\"") {
        return fail(user, &mut request, "expected the login page", &reply);
    }
    let Some(mut form) = form_fields(&reply.body).filter(|_| jar.has(CSRF_COOKIE)) else {
        return fail(user, &mut request, "no CSRF cookie or token", &reply);
    };

    // 2. The login form: back to the authorization request, signed in.
    form.push(("username".into(), username.into()));
    form.push(("password".into(), ACCOUNT_PASSWORD.into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut request, reply) = step(
        user,
        GooseMethod::Post,
        "/oauth/login",
        "login",
        303,
        &jar,
        Body::Form(&pairs),
    )
    .await?;
    let Some(reply) = reply else { return Ok(()) };
    jar.keep(&reply.headers);
    let back = match reply.location() {
        Some(l) if reply.status == 303 && l.starts_with("/oauth/authorize?") => l.to_owned(),
        _ => return fail(user, &mut request, "expected a redirect to /oauth/authorize", &reply),
    };
    if !jar.has(SESSION_COOKIE) {
        return fail(user, &mut request, "no session cookie", &reply);
    }

    // 3. Signed in: the consent page the first time, straight to the client once remembered.
    let consented = accounts.consented[account].load(Ordering::Relaxed);
    let expect = if consented { 303 } else { 200 };
    let (mut request, reply) = step(user, GooseMethod::Get, &back, "consent", expect, &jar, Body::None).await?;
    let Some(reply) = reply else { return Ok(()) };
    jar.keep(&reply.headers);
    let callback = match reply.status {
        200 if !consented && reply.body.contains("name=\"decision\"") => {
            CONSENT_PAGES.fetch_add(1, Ordering::Relaxed);
            let Some(mut form) = form_fields(&reply.body) else {
                return fail(user, &mut request, "no CSRF token on the consent page", &reply);
            };
            form.push(("decision".into(), "allow".into()));
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (mut request, reply) = step(
                user,
                GooseMethod::Post,
                "/oauth/consent",
                "consent",
                303,
                &jar,
                Body::Form(&pairs),
            )
            .await?;
            let Some(reply) = reply else { return Ok(()) };
            match reply.location() {
                Some(l) if reply.status == 303 && l.starts_with(REDIRECT_URI) => {
                    accounts.consented[account].store(true, Ordering::Relaxed);
                    (request, reply)
                }
                _ => return fail(user, &mut request, "expected a redirect to the client", &reply),
            }
        }
        303 if reply.location().is_some_and(|l| l.starts_with(REDIRECT_URI)) => {
            if !consented {
                // Another goose user signed in to the same account (more users than
                // LOADTEST_USERS) and gave the consent meanwhile: a right answer.
                user.set_success(&mut request)?;
                accounts.consented[account].store(true, Ordering::Relaxed);
            }
            (request, reply)
        }
        _ if consented => return fail(user, &mut request, "the consent was not remembered", &reply),
        _ => return fail(user, &mut request, "expected the consent page", &reply),
    };
    let (mut request, reply) = callback;
    let location = reply.location().unwrap_or_default();
    let code = match query_param(location, "code") {
        Some(code) if query_param(location, "state").as_deref() == Some(state.as_str()) => code,
        _ => return fail(user, &mut request, "no code, or another state, in the redirect", &reply),
    };
    if query_param(location, "iss").is_none() {
        return fail(user, &mut request, "no iss in the redirect", &reply);
    }

    // 4. The code exchange, with the PKCE verifier.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
    ];
    let fields = ["access_token", "refresh_token", "id_token"];
    let Some(tokens) = token_request(user, "token: code", &jar, client, &form, &fields).await? else {
        return Ok(());
    };
    let refresh_token = tokens[1].clone();
    LOGINS.fetch_add(1, Ordering::Relaxed);

    // 5. One refresh: new tokens, and a new refresh token.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let fields = ["access_token", "refresh_token"];
    let Some(tokens) = token_request(user, "token: refresh", &jar, client, &form, &fields).await? else {
        return Ok(());
    };
    if tokens[1] == refresh_token {
        // The request was a success as far as HTTP goes; the rotation is what failed.
        let (mut request, reply) = (tokens.request, tokens.reply);
        return fail(user, &mut request, "the refresh token did not rotate", &reply);
    }
    Ok(())
}

/// The token fields of a successful token response, with the request and reply they came in.
struct Tokens {
    values: Vec<String>,
    request: GooseRequestMetric,
    reply: Reply,
}

impl std::ops::Index<usize> for Tokens {
    type Output = String;
    fn index(&self, i: usize) -> &String {
        &self.values[i]
    }
}

/// POSTs `form` to the token endpoint as `client` and reads `fields` from a 200 answer. `None`
/// when the request failed; the failure is already recorded.
async fn token_request(
    user: &mut GooseUser,
    name: &'static str,
    jar: &Jar,
    client: &Client,
    form: &[(&str, &str)],
    fields: &[&'static str],
) -> Result<Option<Tokens>, Box<TransactionError>> {
    let (mut request, reply) = step(
        user,
        GooseMethod::Post,
        "/oauth/token",
        name,
        200,
        jar,
        Body::ClientForm(client, form),
    )
    .await?;
    let Some(reply) = reply else { return Ok(None) };
    if reply.status != 200 {
        fail(user, &mut request, "expected tokens", &reply)?;
        return Ok(None);
    }
    match token_fields(&reply.body, fields) {
        Ok(values) => Ok(Some(Tokens { values, request, reply })),
        Err(missing) => {
            fail(user, &mut request, &format!("no {missing}"), &reply)?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_read_and_unescaped() {
        let html = r#"<form method="post" action="/oauth/login">
  <input type="hidden" name="csrf" value="abc_-1">
  <input type="hidden" name="redirect_uri" value="http:&#x2f;&#x2f;127.0.0.1:3001&#x2f;callback">
  <input type="hidden" name="state" value="a&amp;b&quot;c">
  <input type="text" id="username" name="username" value="" required>"#;
        let fields = form_fields(html).unwrap();
        assert_eq!(
            fields,
            [
                ("csrf".to_owned(), "abc_-1".to_owned()),
                ("redirect_uri".to_owned(), REDIRECT_URI.to_owned()),
                ("state".to_owned(), "a&b\"c".to_owned()),
            ]
        );
        assert!(form_fields(r#"<input type="hidden" name="state" value="x">"#).is_none());
    }

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_jar_keeps_replaces_and_drops_cookies() {
        let mut jar = Jar::default();
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "tessera_csrf=seed; Path=/; HttpOnly".parse().unwrap());
        headers.append(SET_COOKIE, "tessera_session=s1; Path=/; Max-Age=3600".parse().unwrap());
        jar.keep(&headers);
        assert_eq!(jar.header(), "tessera_csrf=seed; tessera_session=s1");
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "tessera_session=; Path=/; Max-Age=0".parse().unwrap());
        jar.keep(&headers);
        assert_eq!(jar.header(), "tessera_csrf=seed");
    }

    #[test]
    fn redirects_give_up_their_parameters() {
        let l = "http://127.0.0.1:3001/callback?code=tsc_1&state=a+b&iss=http%3A%2F%2Fh";
        assert_eq!(query_param(l, "code").as_deref(), Some("tsc_1"));
        assert_eq!(query_param(l, "state").as_deref(), Some("a b"));
        assert_eq!(query_param(l, "iss").as_deref(), Some("http://h"));
        assert_eq!(
            encode(&[("scope", "openid read"), ("r", "http://h/c")]),
            "scope=openid+read&r=http%3A%2F%2Fh%2Fc"
        );
    }
}
