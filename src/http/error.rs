//! The one place where errors become HTTP responses.
//!
//! - `invalid_client` → 401 with `WWW-Authenticate: Basic` (RFC 6749 §5.2);
//! - other OAuth errors → 400 with `{"error", "error_description"}`;
//! - refused input (`http::extract::InputError`) → `invalid_request` with its status: 413 for
//!   an oversized body, 408 for a body that did not arrive in time, 414 for a long query, 431
//!   for oversized headers, 400 for a malformed, repeated or mistyped form;
//! - storage that cannot be reached, a shard that does not answer, a node that lost its shared
//!   database → 503; other storage failures → 500; no detail (the detail goes to the log, here);
//! - bearer-token failures (userinfo) → RFC 6750 §3: 401 with `WWW-Authenticate: Bearer`, and
//!   `error="invalid_token"` or, with 403, `error="insufficient_scope"`;
//! - a rate limit → 429 with `Retry-After` in whole seconds and, as RFC 6749 has no 429 code,
//!   its overload code `temporarily_unavailable`;
//! - every error response carries `Cache-Control: no-store`.
//!
//! Errors caused by bad input are not logged: they are the client's business, not the
//! operator's, and logging them would let any client fill the log.

use actix_web::error::JsonPayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use super::extract::InputError;
use crate::authority::AuthorityError;
use crate::limits::{Limited, Limits};
use crate::oauth::OAuthError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    OAuth(OAuthError),
    PayloadTooLarge,
    /// The request's body, query or headers were refused before any work (`http::extract`).
    Input(InputError),
    /// The admin credential was missing or wrong.
    AdminUnauthorized,
    NotFound,
    /// The change conflicts with how the server is configured (an entry the config file owns).
    Conflict(String),
    /// A failure of ours: storage, a stopped shard.
    Internal,
    Unavailable,
    /// A protected resource was asked for without a bearer token (RFC 6750 §3.1: no error code).
    BearerMissing,
    /// The bearer token is malformed, unknown, expired or revoked.
    InvalidToken,
    /// The bearer token lacks this scope.
    InsufficientScope(&'static str),
    /// A rate limit or quota refused the request (counted by [`rate_limited`]).
    RateLimited(Limited),
}

/// The answer to a request that `endpoint` (a route pattern) refused under a limit: recorded by
/// the limits (`tessera_rate_limited_total`, the audit log), then mapped like every other error.
pub fn rate_limited(limits: &Limits, endpoint: &'static str, limited: Limited) -> ApiError {
    limits.refused(endpoint, &limited);
    ApiError::RateLimited(limited)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl ApiError {
    fn code(&self) -> &str {
        match self {
            ApiError::OAuth(e) => e.code(),
            ApiError::PayloadTooLarge | ApiError::Input(_) => "invalid_request",
            ApiError::AdminUnauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Internal => "server_error",
            ApiError::Unavailable | ApiError::RateLimited(_) => "temporarily_unavailable",
            ApiError::BearerMissing => "unauthorized",
            ApiError::InvalidToken => "invalid_token",
            ApiError::InsufficientScope(_) => "insufficient_scope",
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            ApiError::OAuth(e) => e.description(),
            ApiError::PayloadTooLarge => Some("request body too large"),
            ApiError::Conflict(why) => Some(why),
            ApiError::RateLimited(_) => Some("too many requests; retry after the time in Retry-After"),
            ApiError::Input(e) => Some(e.description()),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::OAuth(OAuthError::InvalidClient)
            | ApiError::AdminUnauthorized
            | ApiError::BearerMissing
            | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::OAuth(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Input(e) => e.status(),
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        match self {
            ApiError::OAuth(OAuthError::InvalidClient) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"tessera\", charset=\"UTF-8\""));
            }
            ApiError::AdminUnauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tessera-admin\""));
            }
            ApiError::Unavailable => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::RateLimited(limited) => {
                res.insert_header((header::RETRY_AFTER, limited.retry_after_secs()));
            }
            ApiError::BearerMissing => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tessera\""));
            }
            ApiError::InvalidToken => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"tessera\", error=\"invalid_token\"",
                ));
            }
            ApiError::InsufficientScope(scope) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{scope}\""),
                ));
            }
            _ => {}
        }
        res.json(ErrorBody {
            error: self.code(),
            error_description: self.description(),
        })
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        ApiError::OAuth(e)
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::OAuth(e) => ApiError::OAuth(e),
            // Storage that cannot be reached (a database away, a flusher gone) may come back:
            // the caller may retry. Anything else is a fault here.
            AuthorityError::Store(e @ (StoreError::Io(_) | StoreError::FlusherGone)) => {
                tracing::error!(error = %e, "storage unavailable while serving a request");
                ApiError::Unavailable
            }
            AuthorityError::Store(e) => {
                tracing::error!(error = %e, "storage failure while serving a request");
                ApiError::Internal
            }
            AuthorityError::Unavailable(why) => {
                tracing::warn!(reason = why, "refused a request this node cannot answer for");
                ApiError::Unavailable
            }
            AuthorityError::ShardUnavailable(e) => {
                tracing::error!(error = %e, "token shard did not answer");
                ApiError::Unavailable
            }
            // Reached only where no endpoint counted it; handlers use `rate_limited`.
            AuthorityError::RateLimited(limited) => ApiError::RateLimited(limited),
            AuthorityError::Internal(e) => {
                tracing::error!(error = %e, "internal failure while serving a request");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::operations::OpError> for ApiError {
    fn from(e: crate::operations::OpError) -> Self {
        use crate::operations::OpError;
        match e {
            OpError::Invalid(why) => OAuthError::InvalidRequest(why.into()).into(),
            OpError::NotFound(_) => ApiError::NotFound,
            e @ OpError::ConfigOwned { .. } => ApiError::Conflict(e.to_string()),
            OpError::Authority(e) => e.into(),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::Input(e)
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(e: JsonPayloadError) -> Self {
        match e {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::PayloadTooLarge
            }
            other => OAuthError::InvalidRequest(format!("invalid JSON body: {other}").into()).into(),
        }
    }
}
