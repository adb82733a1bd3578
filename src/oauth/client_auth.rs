//! Reading client credentials from a request (RFC 6749 §2.3.1).
//!
//! A client authenticates with `client_secret_basic` (HTTP Basic, where id and secret are each
//! form-urlencoded before base64) or `client_secret_post` (`client_id` and `client_secret` in the
//! body), never both at once. This module only extracts what was presented; checking it against
//! the registry happens in `authority`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::OAuthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// The credentials a request carried. `Debug` hides the secret so it can never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedClient {
    pub client_id: String,
    pub secret: String,
    pub method: ClientAuthMethod,
}

impl std::fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedClient")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Extracts the presented credentials from the `Authorization` header value (if any) and the
/// body's `client_id` / `client_secret` (if any).
///
/// Outcomes: the credentials; `invalid_client` when none are presented or the header is not a
/// well-formed Basic credential; `invalid_request` when two methods are mixed (§2.3).
pub fn presented_client(
    authorization: Option<&str>,
    body_client_id: Option<&str>,
    body_client_secret: Option<&str>,
) -> Result<PresentedClient, OAuthError> {
    if let Some(header) = authorization {
        let (id, secret) = parse_basic(header).ok_or(OAuthError::InvalidClient)?;
        if body_client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        if body_client_id.is_some_and(|body_id| body_id != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            ));
        }
        return Ok(PresentedClient {
            client_id: id,
            secret,
            method: ClientAuthMethod::ClientSecretBasic,
        });
    }
    match (body_client_id, body_client_secret) {
        (Some(id), Some(secret)) if !id.is_empty() => Ok(PresentedClient {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
            method: ClientAuthMethod::ClientSecretPost,
        }),
        _ => Err(OAuthError::InvalidClient),
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))`. The scheme is case-insensitive.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = form_decode(id)?;
    if id.is_empty() {
        return None;
    }
    Some((id, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one component: `+` is a space.
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = presented_client(Some(&basic("my%20app:s%3Ac+r")), None, None).unwrap();
        assert_eq!(p.client_id, "my app");
        assert_eq!(p.secret, "s:c r");
        assert_eq!(p.method, ClientAuthMethod::ClientSecretBasic);
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let header = basic("a:b").replacen("Basic", "bAsIc", 1);
        assert_eq!(presented_client(Some(&header), None, None).unwrap().client_id, "a");
    }

    #[test]
    fn post_credentials() {
        let p = presented_client(None, Some("a"), Some("b")).unwrap();
        assert_eq!((p.client_id.as_str(), p.secret.as_str()), ("a", "b"));
        assert_eq!(p.method, ClientAuthMethod::ClientSecretPost);
    }

    #[test]
    fn missing_or_malformed_credentials_are_invalid_client() {
        assert_eq!(presented_client(None, None, None), Err(OAuthError::InvalidClient));
        assert_eq!(presented_client(None, Some("a"), None), Err(OAuthError::InvalidClient));
        assert_eq!(
            presented_client(Some("Bearer abc"), None, None),
            Err(OAuthError::InvalidClient)
        );
        assert_eq!(
            presented_client(Some("Basic !!!"), None, None),
            Err(OAuthError::InvalidClient)
        );
        assert_eq!(
            presented_client(Some(&basic("nocolon")), None, None),
            Err(OAuthError::InvalidClient)
        );
        assert_eq!(
            presented_client(Some(&basic(":secret")), None, None),
            Err(OAuthError::InvalidClient)
        );
    }

    #[test]
    fn mixing_methods_is_invalid_request() {
        let err = presented_client(Some(&basic("a:b")), None, Some("b")).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        let err = presented_client(Some(&basic("a:b")), Some("other"), None).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        assert!(presented_client(Some(&basic("a:b")), Some("a"), None).is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = presented_client(None, Some("a"), Some("hunter2")).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
