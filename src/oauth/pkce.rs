//! PKCE (RFC 7636) with the `S256` method only: OAuth 2.1 §4.1.1 requires PKCE, and `plain`
//! would send the verifier itself through the browser, so it is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::OAuthError;

/// RFC 7636 §4.1: 43 to 128 characters from `[A-Za-z0-9-._~]`.
fn is_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Validates the `code_challenge` and `code_challenge_method` of an authorization request.
/// Outcomes: the challenge; `invalid_request` if it is missing, if the method is not `S256`
/// (an absent method means `plain`, RFC 7636 §4.3), or if it is not a base64url SHA-256.
pub fn challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, OAuthError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE with S256)"))?;
    if method != Some("S256") {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256; plain is not accepted",
        ));
    }
    // base64url without padding of 32 bytes is 43 characters.
    if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(challenge).is_err() {
        return Err(OAuthError::invalid_request(
            "code_challenge must be the base64url SHA-256 of the verifier",
        ));
    }
    Ok(challenge.to_owned())
}

/// Whether `verifier` hashes to `challenge` (RFC 7636 §4.6), compared in constant time.
pub fn verifies(verifier: &str, challenge: &str) -> bool {
    if !is_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies() {
        assert_eq!(challenge(Some(CHALLENGE), Some("S256")).unwrap(), CHALLENGE);
        assert!(verifies(VERIFIER, CHALLENGE));
        assert!(!verifies(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!verifies("short", CHALLENGE));
        assert!(
            !verifies(&format!("{VERIFIER} "), CHALLENGE),
            "a space is not a verifier character"
        );
    }

    #[test]
    fn plain_missing_and_malformed_challenges_are_refused() {
        for (c, m) in [
            (None, Some("S256")),
            (Some(""), Some("S256")),
            (Some(CHALLENGE), None),
            (Some(CHALLENGE), Some("plain")),
            (Some(CHALLENGE), Some("s256")),
            (Some("tooshort"), Some("S256")),
            (Some("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"), Some("S256")),
        ] {
            assert_eq!(challenge(c, m).unwrap_err().code(), "invalid_request", "{c:?} {m:?}");
        }
    }
}
