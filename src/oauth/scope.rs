//! Scopes (RFC 6749 §3.3): parsing, and the rule that a client gets only what it was granted.
//!
//! Guarantees: a parsed [`Scope`] holds at most [`MAX_SCOPE_TOKENS`] distinct tokens of at most
//! [`MAX_SCOPE_TOKEN_BYTES`] bytes each, all of RFC 6749 §3.3 characters. Parsing walks the input
//! once and stops at the first token past a cap, so a hostile `scope` costs time in proportion
//! to the caps, not to its length; de-duplication is linear (a hash set past a few tokens).

use std::collections::HashSet;

use super::OAuthError;

/// Most scope tokens one request may name (repeats included). Registered clients hold a handful
/// of scopes (the discovery document lists six); 64 leaves room for fine-grained API scopes
/// while bounding every later check (`is_subset_of`, consent lookups) to a small constant.
pub const MAX_SCOPE_TOKENS: usize = 64;
/// Longest scope token, in bytes. Scope names are identifiers or URLs of API permissions
/// (`https://api.example/orders.read`); 128 bytes holds such URLs and refuses a 100 KiB token
/// at once.
pub const MAX_SCOPE_TOKEN_BYTES: usize = 128;

/// Past this many tokens, de-duplication uses a hash set instead of a scan.
const SCAN_DEDUP_UP_TO: usize = 8;

/// A validated, de-duplicated set of scope tokens, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses a `scope` parameter. Scope tokens are separated by spaces and made of the
    /// characters RFC 6749 §3.3 allows (`%x21 / %x23-5B / %x5D-7E`); repeated spaces are
    /// tolerated, repeated tokens collapse into one. More than [`MAX_SCOPE_TOKENS`] tokens or a
    /// token longer than [`MAX_SCOPE_TOKEN_BYTES`] is `invalid_scope`, found without reading
    /// past the offending token.
    pub fn parse(raw: &str) -> Result<Self, OAuthError> {
        let mut given: Vec<&str> = Vec::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if given.len() == MAX_SCOPE_TOKENS {
                return Err(OAuthError::InvalidScope(
                    format!("scope names more than {MAX_SCOPE_TOKENS} tokens").into(),
                ));
            }
            if token.len() > MAX_SCOPE_TOKEN_BYTES {
                return Err(OAuthError::InvalidScope(
                    format!("a scope token is longer than {MAX_SCOPE_TOKEN_BYTES} bytes").into(),
                ));
            }
            if !token.bytes().all(is_scope_char) {
                return Err(OAuthError::InvalidScope(
                    "scope contains a character outside RFC 6749 §3.3".into(),
                ));
            }
            given.push(token);
        }
        Ok(Scope::from_tokens(given))
    }

    /// A scope of `tokens`, de-duplicated in linear time, in the order first given. The tokens
    /// are trusted (registered scopes, stored grants): no character or cap check here.
    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        let tokens: Vec<String> = tokens.into_iter().map(Into::into).collect();
        if tokens.len() <= SCAN_DEDUP_UP_TO {
            let mut out: Vec<String> = Vec::with_capacity(tokens.len());
            for t in tokens {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            return Scope(out);
        }
        let mut seen: HashSet<String> = HashSet::with_capacity(tokens.len());
        let mut out = Vec::with_capacity(tokens.len());
        for t in tokens {
            if seen.insert(t.clone()) {
                out.push(t);
            }
        }
        Scope(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.iter().any(|t| t == token)
    }

    /// Whether every token of `self` is in `allowed`. At most [`MAX_SCOPE_TOKENS`] scans of
    /// `allowed` for a parsed scope.
    pub fn is_subset_of(&self, allowed: &[String]) -> bool {
        self.0.iter().all(|t| allowed.contains(t))
    }

    /// The space-separated form used on the wire and in storage.
    pub fn to_wire(&self) -> String {
        self.0.join(" ")
    }
}

fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

/// The scope to grant a client: what it asked for if that is within what it is registered for,
/// or, when it asked for nothing, everything it is registered for (RFC 6749 §3.3 lets the server
/// pick a documented default).
pub fn grantable(requested: Option<Scope>, registered: &[String]) -> Result<Scope, OAuthError> {
    match requested {
        Some(scope) if !scope.is_empty() => {
            if scope.is_subset_of(registered) {
                Ok(scope)
            } else {
                Err(OAuthError::InvalidScope(
                    "requested scope exceeds the client's registered scope".into(),
                ))
            }
        }
        _ => Ok(Scope::from_tokens(registered.iter().cloned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_dedupes() {
        let s = Scope::parse("read  write read").unwrap();
        assert_eq!(s.tokens(), &strings(&["read", "write"])[..]);
        assert_eq!(s.to_wire(), "read write");
    }

    #[test]
    fn rejects_forbidden_characters() {
        assert_eq!(Scope::parse("read\"").unwrap_err().code(), "invalid_scope");
        assert_eq!(Scope::parse("re\\ad").unwrap_err().code(), "invalid_scope");
        assert_eq!(Scope::parse("caf\u{e9}").unwrap_err().code(), "invalid_scope");
        assert!(Scope::parse("a:b/c.d-e_f~").is_ok());
    }

    #[test]
    fn caps_on_count_and_length() {
        let at_cap: Vec<String> = (0..MAX_SCOPE_TOKENS).map(|i| format!("s{i}")).collect();
        assert_eq!(
            Scope::parse(&at_cap.join(" ")).unwrap().tokens().len(),
            MAX_SCOPE_TOKENS
        );
        let over = format!("{} extra", at_cap.join(" "));
        assert_eq!(Scope::parse(&over).unwrap_err().code(), "invalid_scope");
        // Repeats count: the cap bounds the work, not only the result.
        let repeated = vec!["read"; MAX_SCOPE_TOKENS + 1].join(" ");
        assert_eq!(Scope::parse(&repeated).unwrap_err().code(), "invalid_scope");
        let long = "a".repeat(MAX_SCOPE_TOKEN_BYTES);
        assert!(Scope::parse(&long).is_ok());
        let too_long = "a".repeat(MAX_SCOPE_TOKEN_BYTES + 1);
        assert_eq!(Scope::parse(&too_long).unwrap_err().code(), "invalid_scope");
        // Spaces alone are not tokens and cost no cap.
        assert!(Scope::parse(&" ".repeat(100_000)).unwrap().is_empty());
    }

    #[test]
    fn dedup_keeps_first_order_past_the_scan_threshold() {
        let many: Vec<String> = (0..20).map(|i| format!("s{}", i % 10)).collect();
        let s = Scope::parse(&many.join(" ")).unwrap();
        let expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        assert_eq!(s.tokens(), &expected[..]);
    }

    #[test]
    fn grants_subset_or_default() {
        let registered = strings(&["read", "write"]);
        let asked = Scope::parse("write").unwrap();
        assert_eq!(grantable(Some(asked), &registered).unwrap().to_wire(), "write");
        assert_eq!(grantable(None, &registered).unwrap().to_wire(), "read write");
        assert_eq!(
            grantable(Some(Scope::parse("").unwrap()), &registered)
                .unwrap()
                .to_wire(),
            "read write"
        );
        let wider = Scope::parse("read admin").unwrap();
        assert_eq!(grantable(Some(wider), &registered).unwrap_err().code(), "invalid_scope");
    }
}
