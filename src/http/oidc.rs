//! OpenID Connect endpoints beside the code flow: the JWK Set, userinfo, and the discovery
//! document (OpenID Connect Discovery 1.0 §4, which shares its fields with RFC 8414).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::extract::Form;
use super::AppState;
use crate::authority::{Authority, UserInfo};
use crate::oauth::grant::SUPPORTED_GRANT_TYPES;

/// The metadata of RFC 8414 and OpenID Connect Discovery, describing exactly what this server
/// does. Both discovery URLs serve it.
pub fn metadata(authority: &Authority) -> serde_json::Value {
    let issuer = authority.issuer();
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        // Tessera's own member: many tokens in one call (README, "Endpoints").
        "introspection_batch_endpoint": format!("{issuer}/oauth/introspect/batch"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "jwks_uri": format!("{issuer}/oauth/jwks"),
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "grant_types_supported": SUPPORTED_GRANT_TYPES.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": authority.signing_algorithms(),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                             "name", "preferred_username", "email", "email_verified"],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        // RFC 9701: introspection answers as signed JWTs, for callers that ask with Accept.
        "introspection_signing_alg_values_supported": authority.signing_algorithms(),
        // The revocation feed (README, "The revocation feed"): Tessera's own members, since no
        // registered metadata names a feed of revocations for resource servers.
        "revocation_events_endpoint": format!("{issuer}/oauth/revocations"),
        "revocation_events_stream_endpoint": format!("{issuer}/oauth/revocations/stream"),
        "revocation_event_types_supported": crate::feed::EVENT_TYPES,
        "revocation_events_signing_alg_values_supported": [authority.event_signing_algorithm()],
        "revocation_events_auth_methods_supported": ["client_secret_basic"],
    })
}

pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata(&state.authority))
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    // Short caching: a relying party that meets an unknown kid after a rotation refetches.
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .content_type("application/jwk-set+json")
        .json(state.authority.jwks(crate::unix_now()))
}

pub struct UserInfoForm {
    access_token: Option<String>,
}

impl crate::oauth::FromPairs for UserInfoForm {
    fn from_pairs(p: &crate::oauth::Pairs<'_>) -> Result<Self, crate::oauth::FormError> {
        Ok(UserInfoForm {
            access_token: p.owned("access_token")?,
        })
    }
}

/// `GET|POST /oauth/userinfo` with a bearer token in the `Authorization` header, or (POST only)
/// in the form body (RFC 6750 §2.1, §2.2); never both.
pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form<UserInfoForm>,
) -> Result<HttpResponse, ApiError> {
    let limits = state.authority.limits();
    limits
        .check_address(super::client_address(&req, limits.trusted_proxies()))
        .map_err(|limited| super::error::rate_limited(limits, super::routes::USERINFO, limited))?;
    let from_header = match req.headers().get(header::AUTHORIZATION) {
        Some(h) => {
            let value = h.to_str().map_err(|_| ApiError::InvalidToken)?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    Some(token.trim().to_owned())
                }
                _ => return Err(ApiError::InvalidToken),
            }
        }
        None => None,
    };
    let from_body = if req.method() == actix_web::http::Method::POST {
        form.access_token
    } else {
        None
    };
    let token = match (from_header, from_body) {
        (Some(_), Some(_)) => return Err(crate::oauth::OAuthError::invalid_request("the token was sent twice").into()),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(ApiError::BearerMissing),
    };
    match state.authority.userinfo(&token, crate::unix_now()).await? {
        UserInfo::Claims(claims) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(claims)),
        UserInfo::InvalidToken => Err(ApiError::InvalidToken),
        UserInfo::InsufficientScope => Err(ApiError::InsufficientScope("openid")),
    }
}
