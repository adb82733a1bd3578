//! Token requests (RFC 6749 §4, §5): the raw form as it arrives, and the typed grant it is
//! validated into. Adding a grant means adding a `GrantRequest` variant, and the compiler then
//! lists every place that must handle it.

use serde::{Deserialize, Serialize};

use super::{OAuthError, Scope};

/// Grant types a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

/// The body of `POST /oauth/token` as parsed from the form; a repeated parameter is refused by
/// the form parser before this exists (RFC 6749 §3.2).
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// A validated token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantRequest {
    /// RFC 6749 §4.4.
    ClientCredentials { scope: Option<Scope> },
}

impl GrantRequest {
    /// Validates the form into a grant. Outcomes: the grant; `invalid_request` without a
    /// `grant_type`; `unsupported_grant_type` for any grant this server does not offer.
    pub fn from_form(form: &TokenForm) -> Result<Self, OAuthError> {
        let grant_type = form
            .grant_type
            .as_deref()
            .filter(|g| !g.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        match GrantType::parse(grant_type) {
            Some(GrantType::ClientCredentials) => {
                let scope = form.scope.as_deref().map(Scope::parse).transpose()?;
                Ok(GrantRequest::ClientCredentials { scope })
            }
            Some(GrantType::AuthorizationCode | GrantType::RefreshToken) | None => {
                Err(OAuthError::UnsupportedGrantType)
            }
        }
    }

    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

/// The grant types this server can serve, as advertised in discovery.
pub const SUPPORTED_GRANT_TYPES: &[GrantType] = &[GrantType::ClientCredentials];

#[cfg(test)]
mod tests {
    use super::*;

    fn form(grant: Option<&str>, scope: Option<&str>) -> TokenForm {
        TokenForm {
            grant_type: grant.map(Into::into),
            scope: scope.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn client_credentials_with_and_without_scope() {
        assert_eq!(
            GrantRequest::from_form(&form(Some("client_credentials"), None)).unwrap(),
            GrantRequest::ClientCredentials { scope: None }
        );
        let g = GrantRequest::from_form(&form(Some("client_credentials"), Some("read"))).unwrap();
        assert_eq!(
            g,
            GrantRequest::ClientCredentials {
                scope: Some(Scope::parse("read").unwrap())
            }
        );
        assert_eq!(g.grant_type(), GrantType::ClientCredentials);
    }

    #[test]
    fn missing_and_unknown_grants() {
        assert_eq!(
            GrantRequest::from_form(&form(None, None)).unwrap_err().code(),
            "invalid_request"
        );
        assert_eq!(
            GrantRequest::from_form(&form(Some(""), None)).unwrap_err().code(),
            "invalid_request"
        );
        assert_eq!(
            GrantRequest::from_form(&form(Some("password"), None)).unwrap_err(),
            OAuthError::UnsupportedGrantType
        );
    }

    #[test]
    fn bad_scope_is_invalid_scope() {
        let err = GrantRequest::from_form(&form(Some("client_credentials"), Some("a\"b"))).unwrap_err();
        assert_eq!(err.code(), "invalid_scope");
    }

    #[test]
    fn grant_type_names_round_trip() {
        for g in [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ] {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
    }
}
