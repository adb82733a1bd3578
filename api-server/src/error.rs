//! [`AuthError`]: why a request was not let through, and the one place that turns it into an
//! HTTP answer (RFC 6750 §3 for token problems; 503 with `Retry-After` when Tessera cannot be
//! asked).

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    MissingToken,
    #[error("the bearer token is malformed")]
    MalformedToken,
    #[error("the access token is invalid, expired or revoked")]
    InvalidToken,
    #[error("the access token lacks the scope {0}")]
    InsufficientScope(String),
    #[error("the authorization server cannot be reached")]
    Unavailable { retry_after: Duration },
    #[error("this route asks for a bearer token but the service has no ResourceServer")]
    NotConfigured,
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing",
            AuthError::MalformedToken => "malformed",
            AuthError::InvalidToken => "invalid",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::Unavailable { .. } => "unavailable",
            AuthError::NotConfigured => "not_configured",
        }
    }

    /// The `error` code of the answer's body and challenge.
    fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken | AuthError::MalformedToken | AuthError::InvalidToken => "invalid_token",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::Unavailable { .. } => "temporarily_unavailable",
            AuthError::NotConfigured => "server_error",
        }
    }
}

/// `Retry-After` in whole seconds, rounded up and at least one: a client told 0 would retry in
/// a tight loop.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::MissingToken | AuthError::MalformedToken | AuthError::InvalidToken => StatusCode::UNAUTHORIZED,
            AuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        metrics::counter!(crate::metrics::AUTH_REJECTIONS, "reason" => self.reason()).increment(1);
        let description = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        let mut body = json!({ "error": self.code(), "error_description": description });
        match self {
            // The contract asks for `error="invalid_token"` on a missing token too (RFC
            // 6750 §3.1 would allow leaving it out); a client reacts to both the same way: it
            // gets a token and tries again.
            AuthError::MissingToken | AuthError::MalformedToken | AuthError::InvalidToken => {
                response.insert_header((header::WWW_AUTHENTICATE, challenge(self.code(), &description, None)));
            }
            AuthError::InsufficientScope(scope) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    challenge(self.code(), &description, Some(scope)),
                ));
                body["scope"] = json!(scope);
            }
            AuthError::Unavailable { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs(*retry_after)));
            }
            AuthError::NotConfigured => tracing::error!("{description}"),
        }
        response.json(body)
    }
}

/// RFC 6750 §3: `Bearer error="…", error_description="…"[, scope="…"]`. Quoted values may not
/// hold `"` or `\` (and scope tokens cannot, RFC 6749 §3.3), so the description drops them.
fn challenge(code: &str, description: &str, scope: Option<&str>) -> HeaderValue {
    let description: String = description.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
    let mut value = format!("Bearer error=\"{code}\", error_description=\"{description}\"");
    if let Some(scope) = scope {
        value.push_str(&format!(", scope=\"{scope}\""));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn parts(e: AuthError) -> (u16, Option<String>, Option<String>, serde_json::Value) {
        let r = e.error_response();
        let h = |n| r.headers().get(n).map(|v: &HeaderValue| v.to_str().unwrap().to_owned());
        let (www, retry) = (h(header::WWW_AUTHENTICATE), h(header::RETRY_AFTER));
        let status = r.status().as_u16();
        let body = r.into_body().try_into_bytes().unwrap();
        (status, www, retry, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn token_problems_are_401_invalid_token() {
        for e in [
            AuthError::MissingToken,
            AuthError::MalformedToken,
            AuthError::InvalidToken,
        ] {
            let (status, www, retry, body) = parts(e);
            assert_eq!(status, 401);
            assert!(www.unwrap().starts_with("Bearer error=\"invalid_token\""));
            assert_eq!(retry, None);
            assert_eq!(body["error"], "invalid_token");
        }
    }

    #[test]
    fn insufficient_scope_is_403_and_names_the_scope() {
        let (status, www, _, body) = parts(AuthError::InsufficientScope("write".into()));
        assert_eq!(status, 403);
        let www = www.unwrap();
        assert!(www.starts_with("Bearer error=\"insufficient_scope\""), "{www}");
        assert!(www.ends_with(", scope=\"write\""), "{www}");
        // Every quoted value is closed before the next parameter: no stray quote inside.
        assert_eq!(www.matches('"').count(), 6, "{www}");
        assert_eq!(body["scope"], "write");
    }

    #[test]
    fn unavailable_is_503_with_retry_after_in_whole_seconds() {
        let (status, www, retry, body) = parts(AuthError::Unavailable {
            retry_after: Duration::from_millis(2100),
        });
        assert_eq!((status, www, retry.as_deref()), (503, None, Some("3")));
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(4)), 4);
    }
}
