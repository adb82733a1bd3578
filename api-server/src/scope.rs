//! Scopes as a resource server sees them: the space-separated `scope` of an introspection answer
//! (RFC 6749 §3.3), checked one required scope at a time.

use std::sync::Arc;

/// A token's granted scopes. Cheap to clone: every caller of a cached token shares one list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Arc<[Box<str>]>);

impl Scopes {
    pub fn parse(s: &str) -> Scopes {
        let mut list: Vec<Box<str>> = s.split(' ').filter(|p| !p.is_empty()).map(Box::from).collect();
        list.sort_unstable();
        list.dedup();
        Scopes(list.into())
    }

    /// Scope tokens compare exactly: `read` does not satisfy `Read` or `read:all`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| &**s == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_exactly_and_ignore_extra_spaces() {
        let s = Scopes::parse(" write  read read ");
        assert!(s.contains("read") && s.contains("write"));
        assert!(!s.contains("Read") && !s.contains("rea") && !s.contains(""));
        assert_eq!(s.to_string(), "read write");
        assert!(Scopes::parse("").is_empty());
    }
}
