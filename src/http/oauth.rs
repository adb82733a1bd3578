//! The OAuth endpoints: token (RFC 6749 §3.2), introspection (RFC 7662) and revocation
//! (RFC 7009). Each handler parses the form, authenticates the client, makes one call to the
//! authority, and maps the reply.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::{rate_limited, ApiError};
use super::extract::{Form, FormOrJson};
use super::{routes, AppState};
use crate::authority::AuthorityError;
use crate::oauth::{client_auth, FormError, FromPairs, GrantRequest, Pairs, TokenForm};
use crate::store::ClientRecord;

/// The body of introspection and revocation requests. `token_type_hint` is not read: a server
/// that cannot find the token under the hint must search all types anyway (RFC 7009 §2.1), and
/// Tessera's lookup is the same for every type. `Debug` hides the token and the secret.
pub struct TokenParamForm {
    pub token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for TokenParamForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParamForm")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl FromPairs for TokenParamForm {
    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(TokenParamForm {
            token: p.owned("token")?,
            client_id: p.owned("client_id")?,
            client_secret: p.owned("client_secret")?,
        })
    }
}

/// Most tokens one batch introspection may carry. Each costs a digest and a lookup, so the
/// bound keeps one call's work close to that of a few single calls (the form parser's cap on
/// parameters would stop a form near 64 anyway).
pub const MAX_BATCH_TOKENS: usize = 50;

/// The body of a batch introspection: `token` repeated (a form), or `{"tokens": [...]}`.
/// `Debug` hides the tokens and the secret.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchForm {
    #[serde(default)]
    pub tokens: Vec<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for BatchForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchForm")
            .field("tokens", &self.tokens.len())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl FromPairs for BatchForm {
    const MULTI_VALUED: &'static [&'static str] = &["token"];

    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(BatchForm {
            tokens: p.all("token").map(str::to_owned).collect(),
            client_id: p.owned("client_id")?,
            client_secret: p.owned("client_secret")?,
        })
    }
}

impl BatchForm {
    /// The tokens, if there are between one and [`MAX_BATCH_TOKENS`].
    fn tokens(&self) -> Result<&[String], ApiError> {
        match self.tokens.len() {
            0 => Err(crate::oauth::OAuthError::invalid_request("at least one token is required").into()),
            n if n > MAX_BATCH_TOKENS => Err(crate::oauth::OAuthError::invalid_request(format!(
                "at most {MAX_BATCH_TOKENS} tokens per batch"
            ))
            .into()),
            _ => Ok(&self.tokens),
        }
    }
}

/// The media type of a JWT introspection response (RFC 9701 §4).
pub const INTROSPECTION_JWT: &str = "application/token-introspection+jwt";

/// Whether the caller asked for a JWT response (RFC 9701 §4: `Accept` names the type).
fn wants_jwt(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(INTROSPECTION_JWT))
        })
}

/// Authenticates the client of a request to `endpoint` (a route pattern, for the rate-limit
/// metric), from the request's client address.
pub(super) fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    endpoint: &'static str,
    id: Option<&str>,
    secret: Option<&str>,
) -> Result<std::sync::Arc<ClientRecord>, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or(""));
    let presented = client_auth::presented_client(header, id, secret)?;
    let addr = super::client_address(req, state.authority.limits().trusted_proxies());
    state.authority.authenticate(&presented, addr).map_err(|e| match e {
        AuthorityError::RateLimited(limited) => rate_limited(state.authority.limits(), endpoint, limited),
        other => other.into(),
    })
}

/// JSON with the headers RFC 6749 §5.1 requires on anything that carries a token.
fn no_store_json<T: Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

fn required_token(form: &TokenParamForm) -> Result<&str, ApiError> {
    form.token
        .as_deref()
        .ok_or_else(|| crate::oauth::OAuthError::invalid_request("token is required").into())
}

/// `resource` may repeat (RFC 8707 §2); the form parser refuses every other repeat.
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, secret) = (form.client_id.as_deref(), form.client_secret.as_deref());
    let client = authenticate(&state, &req, routes::TOKEN, id, secret)?;
    let grant = GrantRequest::from_form(&form)?;
    let issued = state.authority.grant(&client, grant, crate::unix_now()).await?;
    Ok(no_store_json(&issued))
}

pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form<TokenParamForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, secret) = (form.client_id.as_deref(), form.client_secret.as_deref());
    let client = authenticate(&state, &req, routes::INTROSPECT, id, secret)?;
    let token = required_token(&form)?;
    let now = crate::unix_now();
    let answer = state.authority.introspect(&client, token, now).await?;
    if wants_jwt(&req) {
        let jwt = state.authority.introspection_jwt(&client, &answer, now).await?;
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type(INTROSPECTION_JWT)
            .body(jwt));
    }
    Ok(no_store_json(&answer))
}

#[derive(Serialize)]
struct BatchAnswer {
    /// One answer per token, in the order asked.
    results: Vec<crate::authority::Introspection>,
}

/// Many tokens in one call, each answered as `introspect` would answer it alone.
pub async fn introspect_batch(
    state: web::Data<AppState>,
    req: HttpRequest,
    FormOrJson(form): FormOrJson<BatchForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, secret) = (form.client_id.as_deref(), form.client_secret.as_deref());
    let client = authenticate(&state, &req, routes::INTROSPECT_BATCH, id, secret)?;
    let tokens = form.tokens()?;
    let results = state
        .authority
        .introspect_many(&client, tokens, crate::unix_now())
        .await?;
    Ok(no_store_json(&BatchAnswer { results }))
}

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form<TokenParamForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, secret) = (form.client_id.as_deref(), form.client_secret.as_deref());
    let client = authenticate(&state, &req, routes::REVOKE, id, secret)?;
    let token = required_token(&form)?;
    state.authority.revoke(&client, token, crate::unix_now()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_one_to_fifty_tokens_and_hides_them() {
        let form = |n: usize| BatchForm {
            tokens: (0..n).map(|i| format!("tsa_secret{i}")).collect(),
            client_id: None,
            client_secret: Some("s3cr3t".into()),
        };
        assert!(form(0).tokens().is_err());
        assert_eq!(form(1).tokens().unwrap().len(), 1);
        assert_eq!(form(MAX_BATCH_TOKENS).tokens().unwrap().len(), MAX_BATCH_TOKENS);
        assert!(form(MAX_BATCH_TOKENS + 1).tokens().is_err());
        let shown = format!("{:?}", form(3));
        assert!(!shown.contains("secret") && !shown.contains("s3cr3t"), "{shown}");
        let parsed = BatchForm::parse_form(b"token=a&token=b&client_id=x").unwrap();
        assert_eq!(parsed.tokens, ["a", "b"]);
        assert!(serde_json::from_str::<BatchForm>(r#"{"tokens":["a"],"other":1}"#).is_err());
    }

    #[test]
    fn debug_of_the_form_hides_the_token_and_the_secret() {
        let form = TokenParamForm {
            token: Some("tsa_t0k3n".into()),
            client_id: Some("api-server".into()),
            client_secret: Some("s3cr3t".into()),
        };
        let shown = format!("{form:?}");
        assert!(!shown.contains("t0k3n") && !shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("api-server"), "{shown}");
    }
}
