//! Words that both the protocol layer (`oauth`) and storage (`store`) speak: grant types and
//! when a client gets a refresh token. They live below both, so that `store` imports nothing
//! from the layers above it, and `oauth` reads client records without storage knowing it.

use serde::{Deserialize, Serialize};

/// Grant types a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

/// When a client registered for the `refresh_token` grant gets a refresh token with a user's
/// tokens: only when the grant includes the `offline_access` scope (the default, OpenID Connect
/// Core §11), or always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshPolicy {
    #[default]
    OfflineAccess,
    Always,
}

impl RefreshPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshPolicy::OfflineAccess => "offline_access",
            RefreshPolicy::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "offline_access" => Some(RefreshPolicy::OfflineAccess),
            "always" => Some(RefreshPolicy::Always),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ] {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        for p in [RefreshPolicy::OfflineAccess, RefreshPolicy::Always] {
            assert_eq!(RefreshPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(GrantType::parse("password"), None);
        assert_eq!(RefreshPolicy::parse("never"), None);
    }
}
