//! Audiences: RFC 8707 resource indicators and the `aud` of an access token.
//!
//! A token's audience is held as its resource URIs separated by single spaces (a valid
//! resource URI has no whitespace, so the join is unambiguous), so that the stored token layout
//! keeps its one `aud` string. Checking a caller against it allocates nothing.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Longest resource URI accepted.
pub const MAX_RESOURCE_LEN: usize = 512;
/// Most `resource` parameters one token request may carry.
pub const MAX_RESOURCES: usize = 8;

/// Whether `uri` may be a resource indicator: an absolute URI (RFC 3986 §4.3: a scheme, `:`,
/// and more) without a fragment (RFC 8707 §2), with no whitespace or control characters.
/// Resource indicators are compared by exact string, so nothing is normalised.
pub fn is_resource_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    scheme_ok
        && !rest.is_empty()
        && uri.len() <= MAX_RESOURCE_LEN
        && !uri.contains('#')
        && !uri
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b >= 0x80)
}

/// The stored audience of a token asked for `resources` (already validated): each once, in
/// the order asked, space-separated; `None` when none was asked.
pub fn join(resources: &[String]) -> Option<String> {
    let mut aud = String::new();
    for r in resources {
        if !aud.split(' ').any(|a| a == r) {
            if !aud.is_empty() {
                aud.push(' ');
            }
            aud.push_str(r);
        }
    }
    (!aud.is_empty()).then_some(aud)
}

/// Whether a token whose audience is `aud` may be shown to a resource server whose resource
/// indicator is `resource`. A token without an audience is valid at every resource server.
pub fn admits(aud: Option<&str>, resource: Option<&str>) -> bool {
    match (aud, resource) {
        (None, _) => true,
        (Some(aud), Some(resource)) => aud.split(' ').any(|a| a == resource),
        (Some(_), None) => false,
    }
}

/// Serialises a stored audience as RFC 7662 §2.2 and RFC 7519 §4.1.3 have it: a string for
/// one audience, an array for several.
pub struct Audience<'a>(pub &'a str);

impl Serialize for Audience<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.0.contains(' ') {
            return s.serialize_str(self.0);
        }
        let mut seq = s.serialize_seq(None)?;
        for a in self.0.split(' ') {
            seq.serialize_element(a)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_are_absolute_without_fragment() {
        for ok in ["https://api.example", "https://api.example/v1?x=1", "urn:example:api"] {
            assert!(is_resource_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "api.example",
            "/relative",
            "https://api.example/#f",
            "https://a b",
            "1http://x",
            "https:",
            "https://api.example/\u{e9}",
            &format!("https://{}", "a".repeat(MAX_RESOURCE_LEN)),
        ] {
            assert!(!is_resource_uri(bad), "{bad:?}");
        }
    }

    #[test]
    fn audiences_join_once_and_admit_only_their_members() {
        let aud = join(&["https://a".into(), "https://b".into(), "https://a".into()]);
        assert_eq!(aud.as_deref(), Some("https://a https://b"));
        assert_eq!(join(&[]), None);
        assert!(admits(aud.as_deref(), Some("https://b")));
        assert!(!admits(aud.as_deref(), Some("https://c")));
        assert!(!admits(aud.as_deref(), Some("https://")), "no prefix match");
        assert!(!admits(aud.as_deref(), None), "a resource server without an indicator");
        assert!(admits(None, Some("https://c")), "no audience: valid everywhere");
        assert!(admits(None, None));
    }

    #[test]
    fn one_audience_is_a_string_several_an_array() {
        assert_eq!(serde_json::to_string(&Audience("https://a")).unwrap(), r#""https://a""#);
        assert_eq!(
            serde_json::to_string(&Audience("https://a https://b")).unwrap(),
            r#"["https://a","https://b"]"#
        );
    }
}
