//! The introspection client: asks Tessera about a token (RFC 7662), authenticated as this
//! resource server with HTTP Basic, over one keep-alive connection pool shared by every worker.
//!
//! It answers with a [`TokenInfo`] or an [`UpstreamError`]; it knows nothing of caching, of the
//! breaker or of HTTP responses to callers. The token is sent in the form body, never in a URL,
//! and is never logged.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::Deserialize;

use crate::scope::Scopes;

/// What Tessera said about an active access token, as the rest of the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The client the token was issued to.
    pub client_id: String,
    /// The user, for tokens from the authorization-code flow; `None` for client credentials.
    pub sub: Option<String>,
    pub username: Option<String>,
    pub scopes: Scopes,
    /// Expiry in seconds since the Unix epoch; `None` for a token that never expires.
    pub exp: Option<u64>,
    /// Issue time in seconds since the Unix epoch: a revocation of the user or client at or
    /// after it concerns this token.
    pub iat: Option<u64>,
    /// The token's opaque id, which a `token-revoked` event names. Tessera always sends it for
    /// active tokens; older ones do not.
    pub jti: Option<String>,
    /// The grant (token family) the token belongs to, which a session-revoked event names;
    /// `None` for client-credentials tokens.
    pub grant_id: Option<String>,
    /// Tessera's bound, in seconds, on caching this answer without the revocation feed.
    pub cache_max_age: Option<u64>,
    /// Tessera's bound, in seconds, on caching this answer while the feed is connected.
    pub cache_max_age_with_feed: Option<u64>,
}

/// Tessera's verdict on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Active(TokenInfo),
    /// Unknown, expired, revoked, or not an access token: the caller is not authenticated.
    Inactive,
}

/// Why an introspection call gave no verdict. Every kind counts as a failure for the breaker:
/// each means Tessera could not vouch for the token just now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("introspection request failed: {0}")]
    Transport(String),
    #[error("introspection timed out")]
    Timeout,
    #[error("introspection endpoint answered HTTP {0}")]
    Status(u16),
    #[error("introspection endpoint refused this resource server's credentials (HTTP {0})")]
    CredentialsRejected(u16),
    #[error("introspection answer is not RFC 7662 JSON: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Transport(_) => "transport",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Status(_) => "status",
            UpstreamError::CredentialsRejected(_) => "credentials",
            UpstreamError::Malformed(_) => "malformed",
        }
    }
}

/// The parts of an RFC 7662 answer this service reads. Unknown members are ignored.
#[derive(Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    grant_id: Option<String>,
    #[serde(default)]
    cache_max_age: Option<u64>,
    #[serde(default)]
    cache_max_age_with_feed: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// RFC 7662 §2.2 / RFC 7519 §4.1.3: one audience as a string, several as an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn includes(&self, resource: &str) -> bool {
        match self {
            Audience::One(a) => a == resource,
            Audience::Many(all) => all.iter().any(|a| a == resource),
        }
    }
}

/// Turns an introspection answer into a verdict. Only access tokens authenticate a request:
/// Tessera also reports refresh tokens as active (with `token_type: "refresh_token"`), and a
/// refresh token presented as a bearer token must be refused. With a `resource` indicator, a
/// token with no `aud`, or one that does not include it, is inactive here.
pub fn verdict_from_json(body: &[u8], resource: Option<&str>) -> Result<Verdict, UpstreamError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    verdict_of(answer, resource)
}

/// The verdicts of a batch answer (`{"results": [...]}`), one per token asked, in order.
pub fn verdicts_from_json(body: &[u8], asked: usize, resource: Option<&str>) -> Result<Vec<Verdict>, UpstreamError> {
    #[derive(Deserialize)]
    struct Batch {
        results: Vec<Answer>,
    }
    let batch: Batch = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    if batch.results.len() != asked {
        return Err(UpstreamError::Malformed(format!(
            "{} answers for {asked} tokens",
            batch.results.len()
        )));
    }
    batch.results.into_iter().map(|a| verdict_of(a, resource)).collect()
}

fn verdict_of(answer: Answer, resource: Option<&str>) -> Result<Verdict, UpstreamError> {
    if !answer.active {
        return Ok(Verdict::Inactive);
    }
    let is_access = answer
        .token_type
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    if !is_access {
        return Ok(Verdict::Inactive);
    }
    if let Some(resource) = resource {
        if !answer.aud.as_ref().is_some_and(|aud| aud.includes(resource)) {
            return Ok(Verdict::Inactive);
        }
    }
    let Some(client_id) = answer.client_id else {
        return Err(UpstreamError::Malformed("an active token without client_id".into()));
    };
    Ok(Verdict::Active(TokenInfo {
        client_id,
        sub: answer.sub,
        username: answer.username,
        scopes: Scopes::parse(answer.scope.as_deref().unwrap_or("")),
        exp: answer.exp,
        iat: answer.iat,
        jti: answer.jti,
        grant_id: answer.grant_id,
        cache_max_age: answer.cache_max_age,
        cache_max_age_with_feed: answer.cache_max_age_with_feed,
    }))
}

/// Where and as whom to introspect.
#[derive(Clone)]
pub struct Introspector {
    http: reqwest::Client,
    endpoint: String,
    batch_endpoint: String,
    authorization: HeaderValue,
    resource: Option<String>,
}

impl Introspector {
    /// `tessera_url` is Tessera's base URL; introspection is at `/oauth/introspect` below it.
    pub fn new(tessera_url: &str, client_id: &str, client_secret: &str, timeout: Duration) -> Result<Self, String> {
        let endpoint = format!("{}/oauth/introspect", tessera_url.trim_end_matches('/'));
        let batch_endpoint = format!("{endpoint}/batch");
        reqwest::Url::parse(&endpoint).map_err(|e| format!("tessera url {tessera_url:?}: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Introspector {
            http,
            endpoint,
            batch_endpoint,
            authorization: basic_authorization(client_id, client_secret)?,
            resource: None,
        })
    }

    /// Checks the audience of active answers against `resource` (see [`verdict_from_json`]).
    pub fn for_resource(self, resource: Option<String>) -> Self {
        Introspector { resource, ..self }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One introspection call.
    pub async fn introspect(&self, token: &str) -> Result<Verdict, UpstreamError> {
        let (status, body) = self
            .post(&self.endpoint, &[("token", token), ("token_type_hint", "access_token")])
            .await?;
        match status {
            200 => verdict_from_json(&body, self.resource.as_deref()),
            // RFC 7662 §2.3: the resource server itself was not authenticated or not allowed.
            400 | 401 | 403 => Err(UpstreamError::CredentialsRejected(status)),
            _ => Err(UpstreamError::Status(status)),
        }
    }

    /// One call for several tokens (Tessera's `/oauth/introspect/batch`), a verdict per token in
    /// order. `Ok(None)`: this Tessera has no batch endpoint (404 or 405), ask one at a time.
    pub async fn introspect_batch(&self, tokens: &[&str]) -> Result<Option<Vec<Verdict>>, UpstreamError> {
        let form: Vec<(&str, &str)> = tokens.iter().map(|t| ("token", *t)).collect();
        let (status, body) = self.post(&self.batch_endpoint, &form).await?;
        match status {
            200 => verdicts_from_json(&body, tokens.len(), self.resource.as_deref()).map(Some),
            404 | 405 => Ok(None),
            400 | 401 | 403 => Err(UpstreamError::CredentialsRejected(status)),
            _ => Err(UpstreamError::Status(status)),
        }
    }

    /// POSTs `form` to `url` as this resource server; the status and the body.
    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<(u16, Vec<u8>), UpstreamError> {
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .form(form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport_error)?;
        Ok((status, body.to_vec()))
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before they are joined for Basic.
/// The revocation feed authenticates with the same header.
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> Result<HeaderValue, String> {
    let encode = |s: &str| serde_urlencoded_component(s);
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    let mut value = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
    .map_err(|e| format!("client credentials: {e}"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn serde_urlencoded_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, FORM_COMPONENT).to_string()
}

/// application/x-www-form-urlencoded leaves only `*-._` and alphanumerics unescaped.
const FORM_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

fn transport_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else {
        // Without the URL: it is the configured endpoint, and this text may reach logs.
        UpstreamError::Transport(e.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_a_resource_indicator_only_tokens_for_it_are_active() {
        let one = br#"{"active":true,"client_id":"c","scope":"read","aud":"https://api.example"}"#;
        let many = br#"{"active":true,"client_id":"c","scope":"read","aud":["https://x","https://api.example"]}"#;
        let other = br#"{"active":true,"client_id":"c","scope":"read","aud":"https://x"}"#;
        let none = br#"{"active":true,"client_id":"c","scope":"read"}"#;
        let here = Some("https://api.example");
        for body in [&one[..], &many[..]] {
            assert!(matches!(verdict_from_json(body, here).unwrap(), Verdict::Active(_)));
        }
        for body in [&other[..], &none[..]] {
            assert_eq!(verdict_from_json(body, here).unwrap(), Verdict::Inactive);
            assert!(
                matches!(verdict_from_json(body, None).unwrap(), Verdict::Active(_)),
                "without an indicator the audience is not checked"
            );
        }
    }

    #[test]
    fn an_active_access_token_becomes_token_info() {
        let body = br#"{"active":true,"scope":"read write","client_id":"demo-client","token_type":"Bearer",
            "exp":1900000000,"iat":1,"iss":"http://x","sub":"u-1","username":"alice","aud":"demo-client"}"#;
        let Verdict::Active(info) = verdict_from_json(body, None).unwrap() else {
            panic!("expected active")
        };
        assert_eq!(info.client_id, "demo-client");
        assert_eq!(info.sub.as_deref(), Some("u-1"));
        assert_eq!(info.username.as_deref(), Some("alice"));
        assert_eq!(info.exp, Some(1_900_000_000));
        assert_eq!(info.iat, Some(1));
        assert!(info.scopes.contains("read") && info.scopes.contains("write"));
        assert!(!info.scopes.contains("admin"));
        assert_eq!((info.jti, info.grant_id), (None, None), "older Tesseras send neither");
        assert_eq!((info.cache_max_age, info.cache_max_age_with_feed), (None, None));
    }

    #[test]
    fn the_feeds_identifiers_and_cache_hints_are_read() {
        let body = br#"{"active":true,"client_id":"demo-client","sub":"u-1","iat":1800000000,"exp":1800003600,
            "jti":"AAAAAAAAAAAAAAAAAAAAAA","grant_id":"g-1","cache_max_age":5,"cache_max_age_with_feed":300}"#;
        let Verdict::Active(info) = verdict_from_json(body, None).unwrap() else {
            panic!("expected active")
        };
        assert_eq!(info.jti.as_deref(), Some("AAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(info.grant_id.as_deref(), Some("g-1"));
        assert_eq!(info.iat, Some(1_800_000_000));
        assert_eq!(info.cache_max_age, Some(5));
        assert_eq!(info.cache_max_age_with_feed, Some(300));
    }

    #[test]
    fn a_batch_answer_gives_one_verdict_per_token_in_order() {
        let body = br#"{"results":[{"active":true,"client_id":"c","scope":"read"},{"active":false},
            {"active":true,"client_id":"c","token_type":"refresh_token"}]}"#;
        let v = verdicts_from_json(body, 3, None).unwrap();
        assert!(matches!(v[0], Verdict::Active(_)));
        assert_eq!(v[1..], [Verdict::Inactive, Verdict::Inactive]);
        assert!(matches!(
            verdicts_from_json(body, 2, None),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(verdicts_from_json(b"[]", 0, None).is_err());
    }

    #[test]
    fn inactive_and_refresh_tokens_do_not_authenticate() {
        assert_eq!(
            verdict_from_json(br#"{"active":false}"#, None).unwrap(),
            Verdict::Inactive
        );
        let refresh = br#"{"active":true,"scope":"read","client_id":"c","token_type":"refresh_token"}"#;
        assert_eq!(verdict_from_json(refresh, None).unwrap(), Verdict::Inactive);
    }

    #[test]
    fn a_token_type_is_optional_and_case_insensitive() {
        for body in [
            &br#"{"active":true,"client_id":"c"}"#[..],
            br#"{"active":true,"client_id":"c","token_type":"bearer"}"#,
        ] {
            assert!(matches!(verdict_from_json(body, None).unwrap(), Verdict::Active(_)));
        }
    }

    #[test]
    fn garbage_and_incomplete_answers_are_upstream_errors() {
        for body in [&b"<html>"[..], b"{}", br#"{"active":true}"#] {
            assert!(
                matches!(verdict_from_json(body, None), Err(UpstreamError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let v = basic_authorization("api server", "p:ss%").unwrap();
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(decoded, b"api%20server:p%3Ass%25");
        assert!(v.is_sensitive());
    }

    #[test]
    fn a_bad_url_is_refused_at_construction() {
        assert!(Introspector::new("not a url", "a", "b", Duration::from_secs(1)).is_err());
        let ok = Introspector::new("http://127.0.0.1:4000/", "a", "b", Duration::from_secs(1)).unwrap();
        assert_eq!(ok.endpoint(), "http://127.0.0.1:4000/oauth/introspect");
    }
}
