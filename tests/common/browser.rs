//! A minimal browser for the code flow over HTTP: it keeps cookies, does not follow redirects,
//! and reads the CSRF field out of pages, so tests see every step the way a browser would.

use std::collections::HashMap;
use std::time::Duration;

use awc::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{Reply, TestServer};

pub const REDIRECT: &str = "http://127.0.0.1:3001/callback";
pub const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query of an authorization request by demo-client for `scope`, with `extra` pairs
/// appended (or replacing the defaults, when they name the same parameter).
pub fn authorize_query(scope: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", "demo-client"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("nonce", "n-456"),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    serde_urlencoded::to_string(&pairs).unwrap()
}

/// The query parameters of a `Location`.
pub fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).unwrap()
}

pub struct Browser<'a> {
    server: &'a TestServer,
    pub cookies: HashMap<String, String>,
    http: awc::Client,
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a TestServer) -> Self {
        Browser {
            server,
            cookies: HashMap::new(),
            http: awc::Client::builder()
                .disable_redirects()
                .timeout(Duration::from_secs(20))
                .finish(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, reply: &Reply) {
        for v in reply.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// GETs `path` (relative to the server) and keeps the cookies it sets.
    pub async fn get(&mut self, path: &str) -> Reply {
        let res = self
            .http
            .get(self.server.url(path))
            .insert_header(("cookie", self.cookie_header()))
            .send()
            .await
            .unwrap();
        let reply = Reply::read(res).await;
        self.keep_cookies(&reply);
        reply
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let res = self
            .http
            .post(self.server.url(path))
            .insert_header(("cookie", self.cookie_header()))
            .send_form(&form)
            .await
            .unwrap();
        let reply = Reply::read(res).await;
        self.keep_cookies(&reply);
        reply
    }

    /// Submits the form on `page` (a login or consent page) with its hidden fields and `fields`.
    pub async fn submit(&mut self, page: &Reply, fields: &[(&str, &str)]) -> Reply {
        let action = attr_after(&page.text, "<form method=\"post\" action=\"", "\"").expect("a form");
        let mut form: Vec<(String, String)> = hidden_inputs(&page.text);
        form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(&action, &pairs).await
    }

    /// From an authorization request with `query`, signs in as alice if asked and approves
    /// consent if asked; returns the final redirect's query parameters (code, state, iss).
    pub async fn approve(&mut self, query: &str) -> HashMap<String, String> {
        self.approve_as(query, "alice", "wonderland-42").await
    }

    /// [`Browser::approve`] as another user.
    pub async fn approve_as(&mut self, query: &str, username: &str, password: &str) -> HashMap<String, String> {
        let mut reply = self.get(&format!("/oauth/authorize?{query}")).await;
        for _ in 0..4 {
            if reply.status == StatusCode::SEE_OTHER {
                let location = reply.header("location").unwrap().to_owned();
                if location.starts_with(REDIRECT) {
                    return query_of(&location);
                }
                reply = self.get(&location).await;
            } else {
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
                reply = if reply.text.contains("name=\"password\"") {
                    self.submit(&reply, &[("username", username), ("password", password)])
                        .await
                } else {
                    assert!(reply.text.contains("Allow"), "{}", reply.text);
                    self.submit(&reply, &[("decision", "allow")]).await
                };
            }
        }
        panic!("no redirect to the client after four steps: {}", reply.text);
    }
}

fn attr_after(html: &str, start: &str, end: &str) -> Option<String> {
    let from = html.find(start)? + start.len();
    let len = html[from..].find(end)?;
    Some(html_unescape(&html[from..from + len]))
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

/// Every `<input type="hidden" name=".." value="..">` of a page.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = attr_after(rest, "name=\"", "\"")?;
            let value = attr_after(rest, "value=\"", "\"")?;
            Some((name, value))
        })
        .collect()
}
