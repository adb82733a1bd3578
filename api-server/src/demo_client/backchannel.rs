//! The demo client's server-to-server calls: Tessera's token and revocation endpoints
//! (client_secret_basic) and the demo API (bearer token).
//!
//! Guarantees: one `reqwest::Client` (one connection pool) with a timeout on every call, no
//! redirects followed (a redirect from a token endpoint is an error, not somewhere to send the
//! client secret), and at most `MAX_BODY` bytes read of any reply. Errors are values describing
//! what went wrong in words fit for the page; none contains a token, a code, a verifier or the
//! client secret, since none of those is ever formatted into one.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{redirect, Client, Response};

use super::protocol::{basic_auth, clip, describe_error_reply, endpoint, TokenReply};

/// The most of any reply that is read; a demo page has no use for more.
const MAX_BODY: usize = 64 * 1024;

/// How long any one back-channel call may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a back-channel call did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum BackchannelError {
    #[error("{0} could not be reached: {1}")]
    Unreachable(&'static str, String),
    #[error("{0} refused: {1}")]
    Refused(&'static str, String),
    #[error("{0} sent a reply this client cannot read: {1}")]
    BadReply(&'static str, String),
}

/// A demo API endpoint the page has a button for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiEndpoint {
    Protected,
    Profile,
    Update,
    Data,
}

impl ApiEndpoint {
    /// The name used in the demo client's own route, `/call/{name}`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "protected" => Some(ApiEndpoint::Protected),
            "profile" => Some(ApiEndpoint::Profile),
            "update" => Some(ApiEndpoint::Update),
            "data" => Some(ApiEndpoint::Data),
            _ => None,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            ApiEndpoint::Update => "POST",
            _ => "GET",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            ApiEndpoint::Protected => "/api/protected",
            ApiEndpoint::Profile => "/api/user/profile",
            ApiEndpoint::Update => "/api/user/update",
            ApiEndpoint::Data => "/api/data",
        }
    }
}

/// What the API answered.
#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub body: Vec<u8>,
}

/// The back channel to Tessera and the demo API. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Backchannel {
    http: Client,
    token_url: String,
    revoke_url: String,
    api_url: String,
    client_auth: HeaderValue,
}

const TESSERA: &str = "Tessera";
const API: &str = "The demo API";

impl Backchannel {
    pub fn new(tessera_url: &str, api_url: &str, client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let http = Client::builder()
            .timeout(TIMEOUT)
            .redirect(redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let mut client_auth = HeaderValue::from_str(&basic_auth(client_id, client_secret))
            .map_err(|_| std::io::Error::other("the client credentials cannot form an Authorization header"))?;
        client_auth.set_sensitive(true);
        Ok(Backchannel {
            http,
            token_url: endpoint(tessera_url, "/oauth/token"),
            revoke_url: endpoint(tessera_url, "/oauth/revoke"),
            api_url: api_url.trim_end_matches('/').to_owned(),
            client_auth,
        })
    }

    /// Redeems an authorization code (RFC 6749 §4.1.3 with the PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenReply, BackchannelError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Uses a refresh token (RFC 6749 §6); Tessera rotates it, so the reply carries the next one.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenReply, BackchannelError> {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await
    }

    /// Revokes a token (RFC 7009); `hint` is `access_token` or `refresh_token`.
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<(), BackchannelError> {
        self.post_to_tessera(&self.revoke_url, &[("token", token), ("token_type_hint", hint)])
            .await
            .map(drop)
    }

    /// Calls the demo API with the access token; any HTTP answer, error statuses included, is a
    /// reply to show.
    pub async fn call_api(
        &self,
        which: ApiEndpoint,
        access_token: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiReply, BackchannelError> {
        let url = format!("{}{}", self.api_url, which.path());
        let request = match which.method() {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        };
        let mut bearer = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| BackchannelError::BadReply(TESSERA, "the access token is not a valid header value".into()))?;
        bearer.set_sensitive(true);
        let mut request = request.header(AUTHORIZATION, bearer);
        if let Some(body) = json_body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| BackchannelError::Unreachable(API, describe(&e)))?;
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(clip);
        let body = read_body(response)
            .await
            .map_err(|e| BackchannelError::Unreachable(API, e))?;
        Ok(ApiReply {
            status,
            www_authenticate,
            body,
        })
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenReply, BackchannelError> {
        let body = self.post_to_tessera(&self.token_url, form).await?;
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|e| BackchannelError::BadReply(TESSERA, format!("the token reply is not valid: {e}")))?;
        if !reply.token_type.eq_ignore_ascii_case("bearer") {
            return Err(BackchannelError::BadReply(
                TESSERA,
                format!("unexpected token type {}", clip(&reply.token_type)),
            ));
        }
        Ok(reply)
    }

    /// POSTs a form to one of Tessera's endpoints as this client; the body of a 2xx answer, or
    /// why there is none (Tessera's own OAuth error when it gave one).
    async fn post_to_tessera(&self, url: &str, form: &[(&str, &str)]) -> Result<Vec<u8>, BackchannelError> {
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.client_auth.clone())
            .form(form)
            .send()
            .await
            .map_err(|e| BackchannelError::Unreachable(TESSERA, describe(&e)))?;
        let status = response.status();
        let body = read_body(response)
            .await
            .map_err(|e| BackchannelError::Unreachable(TESSERA, e))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(BackchannelError::Refused(
                TESSERA,
                describe_error_reply(status.as_u16(), &body),
            ))
        }
    }
}

/// The JSON body for `POST /api/user/update`: the fields the user filled in. With both empty it
/// is `{}`, which is sent anyway so the page shows how the API answers invalid input.
pub fn update_body(display_name: Option<&str>, bio: Option<&str>) -> Vec<u8> {
    let mut fields = serde_json::Map::new();
    for (key, value) in [("display_name", display_name), ("bio", bio)] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            fields.insert(key.to_owned(), value.into());
        }
    }
    serde_json::Value::Object(fields).to_string().into_bytes()
}

/// Reads at most `MAX_BODY` bytes of a reply; the rest is dropped with the connection.
async fn read_body(mut response: Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY {
            break;
        }
    }
    Ok(body)
}

/// A reqwest error with its causes ("error sending request" alone says little). reqwest's
/// messages name the URL, which holds no secret: tokens and codes travel in bodies and headers.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("timed out after {} s", TIMEOUT.as_secs())
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    clip(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_map_names_to_method_and_path() {
        assert_eq!(ApiEndpoint::from_name("update"), Some(ApiEndpoint::Update));
        assert_eq!(ApiEndpoint::Update.method(), "POST");
        assert_eq!(ApiEndpoint::Profile.path(), "/api/user/profile");
        assert_eq!(ApiEndpoint::from_name("data").map(ApiEndpoint::method), Some("GET"));
        assert_eq!(ApiEndpoint::from_name("../admin"), None);
    }

    #[test]
    fn the_update_body_holds_the_filled_in_fields_as_json() {
        let body = |d, b| serde_json::from_slice::<serde_json::Value>(&update_body(d, b)).unwrap();
        assert_eq!(
            body(Some("Al \"ice\""), Some("")),
            serde_json::json!({"display_name": "Al \"ice\""})
        );
        assert_eq!(body(None, Some("hi")), serde_json::json!({"bio": "hi"}));
        assert_eq!(
            body(Some("a"), Some("b")),
            serde_json::json!({"display_name": "a", "bio": "b"})
        );
        assert_eq!(body(None, None), serde_json::json!({}));
    }

    #[test]
    fn the_backchannel_joins_urls_without_double_slashes() {
        let b = Backchannel::new("http://t:1/", "http://a:2//", "c", "s").unwrap();
        assert_eq!(b.token_url, "http://t:1/oauth/token");
        assert_eq!(b.revoke_url, "http://t:1/oauth/revoke");
        assert_eq!(b.api_url, "http://a:2");
    }
}
