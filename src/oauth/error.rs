//! The OAuth error vocabulary. Each variant names the RFC section that defines it; how a variant
//! becomes an HTTP response is decided in exactly one place, `http::error`.

use std::borrow::Cow;

pub type Description = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 §5.2: a parameter is missing, repeated, malformed or unsupported.
    #[error("invalid_request: {0}")]
    InvalidRequest(Description),
    /// RFC 6749 §5.2: client authentication failed. Deliberately carries no detail: whether the
    /// client is unknown or the secret wrong is not the caller's business.
    #[error("invalid_client")]
    InvalidClient,
    /// RFC 6749 §5.2: the grant (code, refresh token) is invalid, expired or revoked.
    #[error("invalid_grant: {0}")]
    InvalidGrant(Description),
    /// RFC 6749 §5.2: the authenticated client may not use this grant type or operation.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Description),
    /// RFC 6749 §5.2: the grant type is not supported by this server.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// RFC 6749 §5.2: the scope is malformed or exceeds what the client may have.
    #[error("invalid_scope: {0}")]
    InvalidScope(Description),
    /// RFC 8707 §2: a `resource` is malformed, or names no registered resource server.
    #[error("invalid_target: {0}")]
    InvalidTarget(Description),
    /// RFC 7009 §2.2.1: the server cannot revoke this type of token.
    #[error("unsupported_token_type")]
    UnsupportedTokenType,
    /// RFC 6749 §4.1.2.1: the authorization server does not offer this `response_type`.
    #[error("unsupported_response_type")]
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1: the resource owner denied the request.
    #[error("access_denied")]
    AccessDenied,
    /// OpenID Connect Core §3.1.2.6: `prompt=none`, and no user is signed in.
    #[error("login_required")]
    LoginRequired,
    /// OpenID Connect Core §3.1.2.6: `prompt=none`, and the user has not consented yet.
    #[error("consent_required")]
    ConsentRequired,
}

impl OAuthError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::UnsupportedTokenType => "unsupported_token_type",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::LoginRequired => "login_required",
            OAuthError::ConsentRequired => "consent_required",
        }
    }

    /// The human-readable `error_description`, where there is one worth giving.
    pub fn description(&self) -> Option<&str> {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d) => Some(d),
            OAuthError::InvalidClient => Some("client authentication failed"),
            OAuthError::AccessDenied => Some("the user denied the request"),
            OAuthError::UnsupportedGrantType
            | OAuthError::UnsupportedTokenType
            | OAuthError::UnsupportedResponseType
            | OAuthError::LoginRequired
            | OAuthError::ConsentRequired => None,
        }
    }

    pub fn invalid_request(description: impl Into<Description>) -> Self {
        OAuthError::InvalidRequest(description.into())
    }
}
