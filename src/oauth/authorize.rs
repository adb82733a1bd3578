//! Authorization requests (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1, OpenID Connect Core §3.1.2.1):
//! the raw query as it arrives, its validation, and where each failure must go.
//!
//! The order of the checks is the protocol's: until the client and its redirect URI are known
//! to match, nothing may be sent to that URI (RFC 6749 §4.1.2.1, "the authorization server
//! SHOULD inform the resource owner of the error and MUST NOT automatically redirect"), so those
//! failures are an error page. Every later failure goes back to the client, with `state`.

use serde::Serialize;

use super::form::{FormError, FromPairs, Pairs};
use super::{pkce, GrantType, OAuthError, Scope};
use crate::store::ClientRecord;

/// The parameters of `GET /oauth/authorize`, also carried through the login and consent forms.
/// Every field is optional here so that each absence gets its own answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    /// OpenID Connect `prompt`: only `none`, `login` and `consent` change anything here.
    pub prompt: Option<String>,
}

impl FromPairs for AuthorizeParams {
    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(AuthorizeParams {
            response_type: p.owned("response_type")?,
            client_id: p.owned("client_id")?,
            redirect_uri: p.owned("redirect_uri")?,
            scope: p.owned("scope")?,
            state: p.owned("state")?,
            code_challenge: p.owned("code_challenge")?,
            code_challenge_method: p.owned("code_challenge_method")?,
            nonce: p.owned("nonce")?,
            prompt: p.owned("prompt")?,
        })
    }
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Scope,
    pub state: Option<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub prompt: Prompt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prompt {
    #[default]
    Default,
    /// Show nothing: answer `login_required` or `consent_required` instead of a page.
    None,
    /// Ask for the password even if a session exists.
    Login,
    /// Show the consent page even if consent was remembered.
    Consent,
}

/// Where a failed authorization request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or its redirect URI could not be trusted: tell the user, never redirect.
    Page(&'static str),
    /// Back to the client's redirect URI with `error`, `error_description` and `state`.
    Redirect {
        redirect_uri: String,
        error: OAuthError,
        state: Option<String>,
    },
}

/// Longest `state` or `nonce` accepted; they are echoed into URLs and stored with the code.
const MAX_ECHOED: usize = 512;

impl AuthorizeParams {
    /// Validates the request against `client` (the registered client named by `client_id`, if
    /// any).
    pub fn validate(&self, client: Option<&ClientRecord>) -> Result<AuthorizeRequest, AuthorizeError> {
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            return Err(AuthorizeError::Page(
                "The request names no client (client_id is missing).",
            ));
        }
        let client = client.ok_or(AuthorizeError::Page(
            "The request names a client that is not registered.",
        ))?;
        let redirect_uri = match self.redirect_uri.as_deref() {
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
            Some(_) => {
                return Err(AuthorizeError::Page(
                    "The redirect URI does not match any URI registered for this client.",
                ))
            }
            // RFC 6749 §3.1.2.3: may be omitted when exactly one is registered.
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AuthorizeError::Page(
                    "The request has no redirect URI, and the client registered more than one.",
                ))
            }
        };
        let state = self.state.clone().filter(|s| !s.is_empty());
        let fail = |error: OAuthError| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            state: state.clone(),
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_ECHOED) {
            return Err(AuthorizeError::Page("The state parameter is too long."));
        }
        match self.response_type.as_deref() {
            Some("code") => {}
            None | Some("") => return Err(fail(OAuthError::invalid_request("response_type is required"))),
            Some(_) => return Err(fail(OAuthError::UnsupportedResponseType)),
        }
        if !client.may_use(GrantType::AuthorizationCode) {
            return Err(fail(OAuthError::UnauthorizedClient(
                "the client is not registered for the authorization code grant".into(),
            )));
        }
        let code_challenge =
            pkce::challenge(self.code_challenge.as_deref(), self.code_challenge_method.as_deref()).map_err(fail)?;
        let scope = match self.scope.as_deref() {
            Some(raw) => Scope::parse(raw).map_err(fail)?,
            None => Scope::default(),
        };
        if scope.is_empty() {
            return Err(fail(OAuthError::InvalidScope("scope is required".into())));
        }
        if !scope.is_subset_of(&client.scopes) {
            return Err(fail(OAuthError::InvalidScope(
                "the requested scope exceeds what the client may have".into(),
            )));
        }
        let nonce = self.nonce.clone().filter(|n| !n.is_empty());
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHOED) {
            return Err(fail(OAuthError::invalid_request("nonce is too long")));
        }
        let prompt = match self.prompt.as_deref() {
            None | Some("") => Prompt::Default,
            Some("none") => Prompt::None,
            Some("login") => Prompt::Login,
            Some("consent") => Prompt::Consent,
            Some(_) => {
                return Err(fail(OAuthError::invalid_request(
                    "prompt must be none, login or consent",
                )))
            }
        };
        Ok(AuthorizeRequest {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope,
            state,
            code_challenge,
            nonce,
            prompt,
        })
    }
}

/// `redirect_uri` with the query parameters `params` appended (RFC 6749 §4.1.2: the URI may
/// already carry a query, which is kept).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let query = super::form::encode(params.iter().copied());
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{query}")
}

/// The redirect for a failed request: `error`, `error_description`, `state` and `iss`, which
/// RFC 9207 §2 requires on error responses as on successes (discovery advertises
/// `authorization_response_iss_parameter_supported`).
pub fn error_redirect(redirect_uri: &str, error: &OAuthError, state: Option<&str>, iss: &str) -> String {
    let mut params = vec![("error", error.code())];
    if let Some(d) = error.description() {
        params.push(("error_description", d));
    }
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    redirect_with(redirect_uri, &params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretDigest;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "app".into(),
            secret_digest: SecretDigest([0; 32]),
            redirect_uris: vec!["https://app.example/cb".into(), "https://app.example/cb2?x=1".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into(), "profile".into(), "read".into()],
            post_logout_redirect_uris: vec![],
            introspect: false,
            resource: None,
            rate_limit_per_sec: 0,
            refresh: Default::default(),
        }
    }

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            scope: Some("openid read".into()),
            state: Some("xyz".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            nonce: Some("n-0S6_WzA2Mj".into()),
            prompt: None,
        }
    }

    fn redirected(p: AuthorizeParams) -> (String, Option<String>) {
        match p.validate(Some(&client())) {
            Err(AuthorizeError::Redirect {
                error,
                state,
                redirect_uri,
            }) => {
                assert_eq!(redirect_uri, "https://app.example/cb");
                (error.code().to_owned(), state)
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_validates() {
        let r = params().validate(Some(&client())).unwrap();
        assert_eq!(r.scope.to_wire(), "openid read");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert_eq!(r.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
        assert_eq!(r.prompt, Prompt::Default);
    }

    #[test]
    fn unknown_clients_and_unregistered_redirects_never_redirect() {
        let no_id = AuthorizeParams {
            client_id: None,
            ..params()
        };
        assert!(matches!(no_id.validate(None), Err(AuthorizeError::Page(_))));
        assert!(matches!(params().validate(None), Err(AuthorizeError::Page(_))));
        for uri in [
            "https://app.example/cb/",
            "https://app.example/CB",
            "https://app.example/cb?x=1",
            "https://evil.example/cb",
            "https://app.example/cb#f",
        ] {
            let p = AuthorizeParams {
                redirect_uri: Some(uri.into()),
                ..params()
            };
            assert!(
                matches!(p.validate(Some(&client())), Err(AuthorizeError::Page(_))),
                "{uri}"
            );
        }
        let omitted = AuthorizeParams {
            redirect_uri: None,
            ..params()
        };
        assert!(
            matches!(omitted.validate(Some(&client())), Err(AuthorizeError::Page(_))),
            "two registered URIs: the request must say which"
        );
    }

    #[test]
    fn the_only_registered_uri_may_be_omitted() {
        let mut one = client();
        one.redirect_uris.truncate(1);
        let p = AuthorizeParams {
            redirect_uri: None,
            ..params()
        };
        assert_eq!(p.validate(Some(&one)).unwrap().redirect_uri, "https://app.example/cb");
    }

    #[test]
    fn later_errors_redirect_with_state() {
        let cases = [
            (
                AuthorizeParams {
                    response_type: Some("token".into()),
                    ..params()
                },
                "unsupported_response_type",
            ),
            (
                AuthorizeParams {
                    response_type: None,
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge: None,
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: Some("plain".into()),
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: None,
                    ..params()
                },
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    scope: Some("openid admin".into()),
                    ..params()
                },
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    scope: None,
                    ..params()
                },
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    prompt: Some("select_account".into()),
                    ..params()
                },
                "invalid_request",
            ),
        ];
        for (p, code) in cases {
            assert_eq!(redirected(p), (code.to_owned(), Some("xyz".to_owned())));
        }
        let mut no_grant = client();
        no_grant.grant_types = vec![GrantType::ClientCredentials];
        assert!(matches!(
            params().validate(Some(&no_grant)),
            Err(AuthorizeError::Redirect {
                error: OAuthError::UnauthorizedClient(_),
                ..
            })
        ));
    }

    #[test]
    fn redirects_keep_an_existing_query_and_encode_values() {
        assert_eq!(
            redirect_with("https://app.example/cb2?x=1", &[("code", "a b"), ("state", "s&t")]),
            "https://app.example/cb2?x=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            error_redirect(
                "https://app.example/cb",
                &OAuthError::AccessDenied,
                Some("xyz"),
                "https://as.example"
            ),
            "https://app.example/cb?error=access_denied&error_description=the+user+denied+the+request&state=xyz&iss=https%3A%2F%2Fas.example"
        );
    }
}
