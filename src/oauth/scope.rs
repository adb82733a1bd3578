//! Scopes (RFC 6749 §3.3): parsing, and the rule that a client gets only what it was granted.

use super::OAuthError;

/// A validated, de-duplicated set of scope tokens, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses a `scope` parameter. Scope tokens are separated by spaces and made of the
    /// characters RFC 6749 §3.3 allows (`%x21 / %x23-5B / %x5D-7E`); repeated spaces are
    /// tolerated, repeated tokens collapse into one.
    pub fn parse(raw: &str) -> Result<Self, OAuthError> {
        let mut tokens: Vec<String> = Vec::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !token.bytes().all(is_scope_char) {
                return Err(OAuthError::InvalidScope(
                    "scope contains a character outside RFC 6749 §3.3".into(),
                ));
            }
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_owned());
            }
        }
        Ok(Scope(tokens))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        let mut out: Vec<String> = Vec::new();
        for t in tokens {
            let t = t.into();
            if !out.contains(&t) {
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

    /// Whether every token of `self` is in `allowed`.
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
