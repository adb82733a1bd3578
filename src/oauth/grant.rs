//! Token requests (RFC 6749 §4, §5): the raw form as it arrives, and the typed grant it is
//! validated into. Adding a grant means adding a `GrantRequest` variant, and the compiler then
//! lists every place that must handle it.

use serde::{Deserialize, Serialize};

use super::form::{FormError, FromPairs, Pairs};
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
#[derive(Debug, Clone, Default)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
}

impl FromPairs for TokenForm {
    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(TokenForm {
            grant_type: p.owned("grant_type")?,
            scope: p.owned("scope")?,
            client_id: p.owned("client_id")?,
            client_secret: p.owned("client_secret")?,
            code: p.owned("code")?,
            redirect_uri: p.owned("redirect_uri")?,
            code_verifier: p.owned("code_verifier")?,
            refresh_token: p.owned("refresh_token")?,
        })
    }
}

/// A validated token request. `Debug` names the grant only: the others hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum GrantRequest {
    /// RFC 6749 §4.4.
    ClientCredentials { scope: Option<Scope> },
    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5). `redirect_uri` must repeat the one of the
    /// authorization request when that request carried one; this server always records the
    /// URI it redirected to, so it is required here.
    AuthorizationCode {
        code: String,
        redirect_uri: String,
        code_verifier: String,
    },
    /// RFC 6749 §6, with rotation (OAuth 2.1 §4.3.1). `scope` may narrow, never widen.
    RefreshToken {
        refresh_token: String,
        scope: Option<Scope>,
    },
}

impl std::fmt::Debug for GrantRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantRequest({})", self.grant_type().as_str())
    }
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
        let required = |value: &Option<String>, name: &'static str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required").into()))
        };
        match GrantType::parse(grant_type) {
            Some(GrantType::ClientCredentials) => {
                let scope = form.scope.as_deref().map(Scope::parse).transpose()?;
                Ok(GrantRequest::ClientCredentials { scope })
            }
            Some(GrantType::AuthorizationCode) => Ok(GrantRequest::AuthorizationCode {
                code: required(&form.code, "code")?,
                redirect_uri: required(&form.redirect_uri, "redirect_uri")?,
                code_verifier: required(&form.code_verifier, "code_verifier")?,
            }),
            Some(GrantType::RefreshToken) => Ok(GrantRequest::RefreshToken {
                refresh_token: required(&form.refresh_token, "refresh_token")?,
                scope: form.scope.as_deref().map(Scope::parse).transpose()?,
            }),
            None => Err(OAuthError::UnsupportedGrantType),
        }
    }

    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::ClientCredentials { .. } => GrantType::ClientCredentials,
            GrantRequest::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            GrantRequest::RefreshToken { .. } => GrantType::RefreshToken,
        }
    }
}

/// The grant types this server can serve, as advertised in discovery.
pub const SUPPORTED_GRANT_TYPES: &[GrantType] = &[
    GrantType::AuthorizationCode,
    GrantType::RefreshToken,
    GrantType::ClientCredentials,
];

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
    fn code_and_refresh_grants_need_their_parameters() {
        let full = TokenForm {
            grant_type: Some("authorization_code".into()),
            code: Some("tsc_x".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            code_verifier: Some("v".repeat(43)),
            ..Default::default()
        };
        let g = GrantRequest::from_form(&full).unwrap();
        assert_eq!(g.grant_type(), GrantType::AuthorizationCode);
        assert_eq!(
            format!("{g:?}"),
            "GrantRequest(authorization_code)",
            "no credential in Debug"
        );
        for missing in ["code", "redirect_uri", "code_verifier"] {
            let mut f = full.clone();
            match missing {
                "code" => f.code = None,
                "redirect_uri" => f.redirect_uri = Some(String::new()),
                _ => f.code_verifier = None,
            }
            let e = GrantRequest::from_form(&f).unwrap_err();
            assert_eq!(e.code(), "invalid_request");
            assert!(e.description().unwrap().contains(missing));
        }
        let refresh = TokenForm {
            grant_type: Some("refresh_token".into()),
            refresh_token: Some("tsr_x".into()),
            scope: Some("read".into()),
            ..Default::default()
        };
        assert_eq!(
            GrantRequest::from_form(&refresh).unwrap(),
            GrantRequest::RefreshToken {
                refresh_token: "tsr_x".into(),
                scope: Some(Scope::parse("read").unwrap())
            }
        );
        let no_token = TokenForm {
            refresh_token: None,
            ..refresh
        };
        assert_eq!(
            GrantRequest::from_form(&no_token).unwrap_err().code(),
            "invalid_request"
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
