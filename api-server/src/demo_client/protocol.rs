//! The OAuth 2.1 and OpenID Connect rules the demo client follows, as pure functions: PKCE,
//! random secrets, the authorize and logout URLs, client authentication, reading token replies,
//! and what the page may show of a token.
//!
//! Nothing here does I/O or reads a clock, so every rule is tested on its own. Guarantees:
//! random values come from the operating system's generator (256 bits each); secrets are
//! compared in constant time; every query parameter this module builds is percent-encoded, so a
//! value can never add or change another parameter; `shorten` never returns a whole token.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Everything but RFC 3986's unreserved characters is encoded, which is safe both in a query
/// string and in `application/x-www-form-urlencoded` (where a bare `+` would mean a space).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How many characters of a token the page shows: enough to tell two tokens apart after a
/// refresh, far too few to use one.
const SHOWN_PREFIX: usize = 8;

/// A fresh secret: 32 bytes from the OS generator, base64url without padding (43 characters).
/// Used for session ids, CSRF tokens, `state`, `nonce` and PKCE verifiers alike, since each needs
/// the same thing: unguessable, and safe in a URL, a cookie and a form field without escaping.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a value from the browser equals the secret we hold, without the time taken revealing
/// how long a prefix matched. A length mismatch may return early: lengths are not secret here.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

fn encode(value: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(value, COMPONENT)
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `base` + `path`, tolerating any number of trailing slashes on `base` so that configured URLs
/// like `http://127.0.0.1:4000/` work.
pub fn endpoint(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// The parameters of one authorization request.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}

/// The URL of Tessera's authorization endpoint for `request`, with PKCE S256.
pub fn authorize_url(tessera_url: &str, request: &AuthorizeRequest<'_>) -> String {
    let params = query(&[
        ("response_type", "code"),
        ("client_id", request.client_id),
        ("redirect_uri", request.redirect_uri),
        ("scope", request.scope),
        ("state", request.state),
        ("nonce", request.nonce),
        ("code_challenge", request.code_challenge),
        ("code_challenge_method", "S256"),
    ]);
    format!("{}?{params}", endpoint(tessera_url, "/oauth/authorize"))
}

/// The URL of Tessera's RP-initiated logout endpoint. The ID token travels in the URL because
/// that is how OpenID Connect RP-Initiated Logout 1.0 defines `id_token_hint`; it is the one
/// token that ever reaches the browser, and it grants no access to the API.
pub fn logout_url(tessera_url: &str, id_token_hint: &str, client_id: &str, post_logout_redirect_uri: &str) -> String {
    let params = query(&[
        ("id_token_hint", id_token_hint),
        ("client_id", client_id),
        ("post_logout_redirect_uri", post_logout_redirect_uri),
    ]);
    format!("{}?{params}", endpoint(tessera_url, "/oauth/logout"))
}

/// The client's own home page (`scheme://authority/`), derived from its redirect URI so the
/// post-logout redirect always points back at the same host the callback uses.
pub fn home_url(redirect_uri: &str) -> Option<String> {
    let (scheme, rest) = redirect_uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/"))
}

/// The `Authorization` header for client_secret_basic. RFC 6749 §2.3.1 has both parts
/// form-encoded before base64, so an id or secret containing `:` cannot be misread.
pub fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// A successful token endpoint reply (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3). Not `Debug`,
/// so its tokens cannot end up in a log line by accident.
#[derive(Clone, Deserialize)]
pub struct TokenReply {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorReply {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A short, human-readable account of an OAuth error reply (RFC 6749 §5.2) with its HTTP
/// status; bodies that are not such a reply are summarised by status alone, so arbitrary
/// upstream content never lands on the page unbounded.
pub fn describe_error_reply(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(ErrorReply {
            error,
            error_description: Some(d),
        }) => format!("HTTP {status}, {}: {}", clip(&error), clip(&d)),
        Ok(ErrorReply { error, .. }) => format!("HTTP {status}, {}", clip(&error)),
        Err(_) => format!("HTTP {status}"),
    }
}

/// At most 200 characters of text that came from elsewhere, so a long query parameter or error
/// description cannot flood the page.
pub fn clip(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A token as the page shows it: a prefix and an ellipsis. Short tokens show at most half their
/// characters, so the result is never the whole token.
pub fn shorten(token: &str) -> String {
    let chars = token.chars().count();
    let shown = SHOWN_PREFIX.min(chars / 2);
    let prefix: String = token.chars().take(shown).collect();
    format!("{prefix}…")
}

/// The claims of an ID token, pretty-printed, for display only: the signature is NOT checked, so
/// nothing here may be trusted for a decision.
pub fn id_token_claims_for_display(id_token: &str) -> Option<String> {
    let mut parts = id_token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then(|| pretty(&claims))
}

/// An HTTP body for display: JSON pretty-printed, anything else as (lossy) text.
pub fn body_for_display(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => pretty(&json),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

fn pretty(json: &serde_json::Value) -> String {
    serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B: the verifier is the base64url of the 32 octets listed there, and its
    /// S256 challenge is given. (Tessera's own `src/oauth/pkce.rs` checks the same vector.)
    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191,
            240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = URL_SAFE_NO_PAD.encode(octets);
        assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(pkce_challenge(&verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn random_secrets_are_43_url_safe_characters_and_differ() {
        let a = random_secret();
        let b = random_secret();
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn same_secret_accepts_only_the_exact_value() {
        assert!(same_secret("abc123", "abc123"));
        assert!(!same_secret("abc124", "abc123"));
        assert!(!same_secret("abc12", "abc123"));
        assert!(!same_secret("abc1234", "abc123"));
        assert!(!same_secret("", "abc123"));
        // An empty expected value means "nothing issued", which nothing may match.
        assert!(!same_secret("", ""));
    }

    #[test]
    fn authorize_url_has_exactly_the_parameters_percent_encoded() {
        let url = authorize_url(
            "http://127.0.0.1:4000//",
            &AuthorizeRequest {
                client_id: "demo client",
                redirect_uri: "http://127.0.0.1:3001/callback?x=1&y=2",
                scope: "openid profile",
                state: "st+ate",
                nonce: "n/o",
                code_challenge: "E9Melhoe2OwvBDe5JCF8Km3GjlFDR7D0nLHWG1GcSY8",
            },
        );
        assert_eq!(
            url,
            "http://127.0.0.1:4000/oauth/authorize?response_type=code&client_id=demo%20client\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A3001%2Fcallback%3Fx%3D1%26y%3D2\
             &scope=openid%20profile&state=st%2Bate&nonce=n%2Fo\
             &code_challenge=E9Melhoe2OwvBDe5JCF8Km3GjlFDR7D0nLHWG1GcSY8&code_challenge_method=S256"
        );
    }

    #[test]
    fn logout_url_carries_the_hint_client_and_return_address() {
        assert_eq!(
            logout_url("http://t/", "a.b.c", "demo-client", "http://127.0.0.1:3001/"),
            "http://t/oauth/logout?id_token_hint=a.b.c&client_id=demo-client\
             &post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A3001%2F"
        );
    }

    #[test]
    fn endpoint_tolerates_trailing_slashes() {
        assert_eq!(endpoint("http://h:1", "/x"), "http://h:1/x");
        assert_eq!(endpoint("http://h:1/", "/x"), "http://h:1/x");
        assert_eq!(endpoint("http://h:1/base///", "/x"), "http://h:1/base/x");
    }

    #[test]
    fn home_url_is_the_redirect_uris_origin() {
        assert_eq!(
            home_url("http://127.0.0.1:3001/callback").as_deref(),
            Some("http://127.0.0.1:3001/")
        );
        assert_eq!(
            home_url("https://app.example?x").as_deref(),
            Some("https://app.example/")
        );
        assert_eq!(home_url("not a url"), None);
        assert_eq!(home_url("http:///callback"), None);
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        assert_eq!(
            basic_auth("demo-client", "demo-secret"),
            "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="
        );
        // "a:b" / "c d" → "a%3Ab:c%20d"
        let header = basic_auth("a:b", "c d");
        let decoded = STANDARD.decode(header.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(decoded, b"a%3Ab:c%20d");
    }

    #[test]
    fn shorten_never_returns_the_whole_token() {
        assert_eq!(shorten("tsa_0123456789abcdef"), "tsa_0123…");
        assert_eq!(shorten("abcd"), "ab…");
        assert_eq!(shorten("a"), "…");
        assert_eq!(shorten(""), "…");
        for token in ["x", "xy", "tsa_12345678", "tsr_abcdefghijklmnopqrstuvwxyz"] {
            assert!(!shorten(token).contains(token), "{token}");
        }
    }

    #[test]
    fn id_token_claims_are_decoded_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","nonce":"n"}"#);
        let claims = id_token_claims_for_display(&format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig")).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(parsed["sub"], "alice");
        assert!(claims.contains('\n'), "pretty-printed");
        assert_eq!(id_token_claims_for_display("only.two"), None);
        assert_eq!(id_token_claims_for_display("a.!!!.c"), None);
        assert_eq!(id_token_claims_for_display("a.b.c.d"), None);
    }

    #[test]
    fn error_replies_are_summarised_and_clipped() {
        assert_eq!(
            describe_error_reply(400, br#"{"error":"invalid_grant","error_description":"code expired"}"#),
            "HTTP 400, invalid_grant: code expired"
        );
        assert_eq!(
            describe_error_reply(401, br#"{"error":"invalid_client"}"#),
            "HTTP 401, invalid_client"
        );
        assert_eq!(describe_error_reply(502, b"<html>bad gateway</html>"), "HTTP 502");
        let long = "x".repeat(500);
        assert_eq!(clip(&long).chars().count(), 201);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn bodies_are_pretty_json_or_text() {
        assert_eq!(body_for_display(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(body_for_display(b"plain <text>"), "plain <text>");
    }
}
