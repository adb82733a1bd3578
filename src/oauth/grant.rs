//! Token requests (RFC 6749 §4, §5): the raw form as it arrives, and the typed grant it is
//! validated into. Adding a grant means adding a `GrantRequest` variant, and the compiler then
//! lists every place that must handle it.

use super::{audience, OAuthError, Scope};

use super::form::{FormError, FromPairs, Pairs};

pub use crate::vocab::GrantType;

/// The body of `POST /oauth/token` as parsed from the form; a repeated parameter is refused by
/// the form parser before this exists (RFC 6749 §3.2), except `resource`, which may repeat
/// (RFC 8707 §2). `Debug` shows only whether each credential was given.
#[derive(Clone, Default)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    /// RFC 8707 resource indicators, in the order given.
    pub resource: Vec<String>,
}

impl std::fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("TokenForm")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .field("client_secret", &given(&self.client_secret))
            .field("code", &given(&self.code))
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &given(&self.code_verifier))
            .field("refresh_token", &given(&self.refresh_token))
            .field("resource", &self.resource)
            .finish()
    }
}

impl FromPairs for TokenForm {
    const MULTI_VALUED: &'static [&'static str] = &["resource"];

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
            resource: p.all("resource").map(str::to_owned).collect(),
        })
    }
}

/// A validated token request. `Debug` names the grant only: the others hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum GrantRequest {
    /// RFC 6749 §4.4.
    ClientCredentials {
        scope: Option<Scope>,
        resources: Vec<String>,
    },
    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5). `redirect_uri` must repeat the one of the
    /// authorization request when that request carried one; this server always records the
    /// URI it redirected to, so it is required here.
    AuthorizationCode {
        code: String,
        redirect_uri: String,
        code_verifier: String,
        resources: Vec<String>,
    },
    /// RFC 6749 §6, with rotation (OAuth 2.1 §4.3.1). `scope` may narrow, never widen.
    RefreshToken {
        refresh_token: String,
        scope: Option<Scope>,
        /// The audience of the new access token; the new refresh token has none.
        resources: Vec<String>,
    },
}

impl std::fmt::Debug for GrantRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantRequest({})", self.grant_type().as_str())
    }
}

impl GrantRequest {
    /// Validates the form into a grant. Outcomes: the grant; `invalid_request` without a
    /// `grant_type`; `unsupported_grant_type` for any grant this server does not offer;
    /// `invalid_target` for a `resource` that is not an absolute URI without a fragment
    /// (whether it names a registered resource server is the authority's check).
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
        let grant = GrantType::parse(grant_type).ok_or(OAuthError::UnsupportedGrantType)?;
        if form.resource.len() > audience::MAX_RESOURCES {
            return Err(OAuthError::InvalidTarget("too many resource parameters".into()));
        }
        if let Some(bad) = form.resource.iter().find(|r| !audience::is_resource_uri(r)) {
            let shown: String = bad.chars().take(64).collect();
            return Err(OAuthError::InvalidTarget(
                format!("resource {shown:?} is not an absolute URI without a fragment").into(),
            ));
        }
        let resources = form.resource.clone();
        match grant {
            GrantType::ClientCredentials => {
                let scope = form.scope.as_deref().map(Scope::parse).transpose()?;
                Ok(GrantRequest::ClientCredentials { scope, resources })
            }
            GrantType::AuthorizationCode => Ok(GrantRequest::AuthorizationCode {
                code: required(&form.code, "code")?,
                redirect_uri: required(&form.redirect_uri, "redirect_uri")?,
                code_verifier: required(&form.code_verifier, "code_verifier")?,
                resources,
            }),
            GrantType::RefreshToken => Ok(GrantRequest::RefreshToken {
                refresh_token: required(&form.refresh_token, "refresh_token")?,
                scope: form.scope.as_deref().map(Scope::parse).transpose()?,
                resources,
            }),
        }
    }

    /// The resource indicators asked for (RFC 8707 §2).
    pub fn resources(&self) -> &[String] {
        match self {
            GrantRequest::ClientCredentials { resources, .. }
            | GrantRequest::AuthorizationCode { resources, .. }
            | GrantRequest::RefreshToken { resources, .. } => resources,
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

    #[test]
    fn debug_of_the_form_shows_no_credential() {
        let form = TokenForm {
            grant_type: Some("refresh_token".into()),
            client_id: Some("demo-client".into()),
            client_secret: Some("secret-s3cr3t".into()),
            code: Some("tsc_code-c0de".into()),
            code_verifier: Some("verifier-v3r1f1er".into()),
            refresh_token: Some("tsr_refresh-r3fr3sh".into()),
            ..TokenForm::default()
        };
        let shown = format!("{form:?}");
        for secret in ["s3cr3t", "c0de", "v3r1f1er", "r3fr3sh"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("demo-client") && shown.contains("refresh_token"),
            "{shown}"
        );
    }

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
            GrantRequest::ClientCredentials {
                scope: None,
                resources: vec![]
            }
        );
        let g = GrantRequest::from_form(&form(Some("client_credentials"), Some("read"))).unwrap();
        assert_eq!(
            g,
            GrantRequest::ClientCredentials {
                scope: Some(Scope::parse("read").unwrap()),
                resources: vec![]
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
                scope: Some(Scope::parse("read").unwrap()),
                resources: vec![]
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

    fn parse(list: &[(&str, &str)]) -> Result<TokenForm, FormError> {
        TokenForm::parse_form(super::super::form::encode(list.iter().copied()).as_bytes())
    }

    #[test]
    fn resource_may_repeat_and_nothing_else_may() {
        let form = parse(&[
            ("grant_type", "client_credentials"),
            ("resource", "https://a.example"),
            ("resource", "https://b.example"),
            ("unknown", "1"),
        ])
        .unwrap();
        assert_eq!(form.resource, ["https://a.example", "https://b.example"]);
        let g = GrantRequest::from_form(&form).unwrap();
        assert_eq!(g.resources(), ["https://a.example", "https://b.example"]);
        for repeated in ["grant_type", "scope", "client_id", "code", "refresh_token"] {
            assert!(
                matches!(parse(&[(repeated, "x"), (repeated, "x")]), Err(FormError::Repeated(_))),
                "{repeated}"
            );
        }
        let many = vec![("resource", "https://a.example"); audience::MAX_RESOURCES + 1];
        let mut too_many = parse(&many).unwrap();
        too_many.grant_type = Some("client_credentials".into());
        assert_eq!(GrantRequest::from_form(&too_many).unwrap_err().code(), "invalid_target");
    }

    #[test]
    fn a_malformed_resource_is_invalid_target() {
        for bad in ["api.example", "https://api.example/#frag", ""] {
            let form = TokenForm {
                resource: vec![bad.into()],
                ..form(Some("client_credentials"), None)
            };
            assert_eq!(
                GrantRequest::from_form(&form).unwrap_err().code(),
                "invalid_target",
                "{bad:?}"
            );
        }
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
