//! The Content-Security-Policy of Tessera's pages.
//!
//! Pages load nothing (`default-src 'none'`, inline styles only), may not be framed, and their
//! forms post to Tessera alone (`form-action 'self'`). Browsers also hold a form's redirects to
//! `form-action`, and the login, consent and sign-out forms end in a 303 to the client (its
//! redirect URI, or its post-logout redirect URI), so those pages also allow that one origin.
//! The origin is derived from a URI that was already matched exactly against the client's
//! registration, and is still checked character by character: a registered URI can never add
//! a directive or a second source. When the check fails, the policy is `'self'` alone (the
//! browser then stops at the redirect, which is safe).

const BASE: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a page without a form that leaves Tessera.
pub fn policy() -> String {
    format!("{BASE}; form-action 'self'")
}

/// The policy of a page whose form leads on to `target` (a validated redirect URI).
pub fn policy_for_form_to(target: &str) -> String {
    match source_of(target) {
        Some(source) => format!("{BASE}; form-action 'self' {source}"),
        None => policy(),
    }
}

/// The CSP source expression that matches `uri`'s origin: `scheme://host[:port]` for http and
/// https, `scheme:` for any other scheme (an app's private-use scheme, RFC 8252 §7.1). `None`
/// when the URI has a character that could end the source or the directive.
fn source_of(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Some(format!("{scheme}:"));
    }
    let authority = rest.strip_prefix("//")?;
    let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    let host_port = &authority[..end];
    // No userinfo, nothing that could end the source (space, `;`, `,`) or quote it.
    let host_ok = !host_port.is_empty()
        && host_port
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    host_ok.then(|| format!("{scheme}://{host_port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_may_lead_on_to_the_validated_origin_only() {
        assert!(policy().ends_with("; form-action 'self'"));
        assert!(policy().starts_with("default-src 'none';"));
        assert_eq!(
            policy_for_form_to("https://app.example/cb?x=1"),
            format!("{BASE}; form-action 'self' https://app.example")
        );
        assert!(
            policy_for_form_to("http://127.0.0.1:3001/callback").ends_with("form-action 'self' http://127.0.0.1:3001")
        );
        assert!(policy_for_form_to("HTTPS://App.Example:8443").ends_with("'self' https://App.Example:8443"));
        assert!(policy_for_form_to("http://[::1]:8080/cb").ends_with("'self' http://[::1]:8080"));
        assert!(policy_for_form_to("com.example.app:/oauth2redirect").ends_with("form-action 'self' com.example.app:"));
    }

    #[test]
    fn a_uri_cannot_inject_a_source_or_a_directive() {
        for uri in [
            "https://app.example;script-src *",
            "https://app.example%20*",
            "https://a.example *",
            "https://user@app.example/cb",
            "https://app.example,https://evil.example",
            "https:app.example",
            "https:///cb",
            "1http://app.example",
            "no-scheme",
            "ja'va:x",
            "",
        ] {
            assert_eq!(policy_for_form_to(uri), policy(), "{uri}");
        }
    }
}
