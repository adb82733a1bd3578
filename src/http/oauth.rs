//! The OAuth endpoints: token (RFC 6749 §3.2), introspection (RFC 7662) and revocation
//! (RFC 7009). Each handler parses the form, authenticates the client, makes one call to the
//! authority, and maps the reply.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::{rate_limited, ApiError};
use super::extract::Form;
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
    let answer = state.authority.introspect(&client, token, crate::unix_now()).await?;
    Ok(no_store_json(&answer))
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
