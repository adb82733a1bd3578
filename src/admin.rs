//! Client registration rules, shared by the config file, the CLI and the admin API, so that a
//! client is validated the same way whichever door it comes in by.

use serde::{Deserialize, Serialize};

use crate::config::RawClient;
use crate::crypto::ServerKey;
use crate::oauth::Scope;
use crate::store::{ClientRecord, UserRecord};
use crate::vocab::{GrantType, RefreshPolicy};

/// A client as an administrator describes it, secret in the clear (it is digested here).
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// May the client introspect? Absent: yes for a client with no grant types (a resource
    /// server), no otherwise.
    #[serde(default)]
    pub introspect: Option<bool>,
    /// The client's RFC 8707 resource indicator, if it is a resource server with one.
    #[serde(default)]
    pub resource: Option<String>,
    /// Requests per second to the token, introspection and revocation endpoints; 0: no limit.
    #[serde(default)]
    pub rate_limit_per_sec: u32,
    #[serde(default)]
    pub refresh_tokens: RefreshPolicy,
}

/// What the admin API and `tessera client list` show of a client: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientView {
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub introspect: bool,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub rate_limit_per_sec: u32,
    #[serde(default)]
    pub refresh_tokens: RefreshPolicy,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        ClientView {
            client_id: c.client_id.clone(),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            introspect: c.introspect,
            resource: c.resource.clone(),
            rate_limit_per_sec: c.rate_limit_per_sec,
            refresh_tokens: c.refresh,
        }
    }
}

impl From<RawClient> for ClientSpec {
    fn from(c: RawClient) -> Self {
        ClientSpec {
            client_id: c.client_id,
            client_secret: c.client_secret,
            redirect_uris: c.redirect_uris,
            grant_types: c.grant_types,
            scopes: c.scopes,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            introspect: c.introspect,
            resource: c.resource,
            rate_limit_per_sec: c.rate_limit_per_sec,
            refresh_tokens: c.refresh_tokens,
        }
    }
}

impl ClientSpec {
    /// Validates the spec and digests its secret. Errors are sentences for an administrator.
    pub fn into_record(self, key: &ServerKey) -> Result<ClientRecord, String> {
        if self.client_id.is_empty()
            || self.client_id.len() > 128
            || !self.client_id.bytes().all(|b| (0x21..0x7f).contains(&b))
        {
            return Err("client_id must be 1 to 128 printable ASCII characters without spaces".into());
        }
        if self.client_secret.len() < 8 {
            return Err("client_secret must be at least 8 characters".into());
        }
        for uri in self.redirect_uris.iter().chain(&self.post_logout_redirect_uris) {
            validate_redirect_uri(uri)?;
        }
        let scope =
            Scope::parse(&self.scopes.join(" ")).map_err(|_| "scopes must be RFC 6749 scope tokens".to_string())?;
        if scope.tokens().len() != self.scopes.len() {
            return Err("scopes must be single tokens without spaces or repeats".into());
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err("a client with the authorization_code grant needs at least one redirect URI".into());
        }
        if let Some(resource) = &self.resource {
            if !crate::oauth::audience::is_resource_uri(resource) {
                return Err(format!(
                    "resource {resource:?} must be an absolute URI without a fragment or whitespace"
                ));
            }
        }
        let mut grant_types = self.grant_types;
        grant_types.dedup();
        Ok(ClientRecord {
            introspect: self.introspect.unwrap_or(grant_types.is_empty()),
            resource: self.resource,
            rate_limit_per_sec: self.rate_limit_per_sec,
            refresh: self.refresh_tokens,
            secret_digest: key.secret_digest(&self.client_secret),
            client_id: self.client_id,
            redirect_uris: self.redirect_uris,
            grant_types,
            scopes: self.scopes,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
        })
    }
}

/// A user as an administrator describes them, password in the clear (it is hashed here).
#[derive(Clone, Serialize, Deserialize)]
pub struct UserSpec {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the admin API and `tessera user list` show of a user: everything but the password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub username: String,
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            username: u.username.clone(),
            sub: u.sub.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
        }
    }
}

/// Usernames are 1 to 64 characters, none of them a control character, a space or `:` (which
/// would make the name ambiguous in logs and Basic credentials). A NUL is a control character,
/// which the consent keys rely on.
pub fn validate_username(username: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&username.chars().count())
        && !username
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':');
    if ok {
        Ok(())
    } else {
        Err("username must be 1 to 64 characters without spaces, colons or control characters".into())
    }
}

impl UserSpec {
    /// Validates the spec and hashes the password (argon2id). An existing user keeps their
    /// `sub`, so tokens and relying parties keep pointing at the same person.
    pub fn into_record(self, existing: Option<&UserRecord>) -> Result<UserRecord, String> {
        validate_username(&self.username)?;
        if self.password.chars().count() < 8 {
            return Err("password must be at least 8 characters".into());
        }
        if let Some(email) = &self.email {
            if !email.contains('@') || email.chars().any(char::is_whitespace) {
                return Err(format!("email {email:?} is not an address"));
            }
        }
        let password_hash = crate::crypto::hash_password(&self.password).map_err(|e| e.to_string())?;
        Ok(UserRecord {
            sub: existing.map_or_else(|| crate::crypto::random_string("", 16), |u| u.sub.clone()),
            username: self.username,
            password_hash,
            email: self.email,
            name: self.name,
        })
    }
}

impl UserSpec {
    /// [`into_record`](Self::into_record), keeping the stored hash when it already verifies the
    /// password: a new hash (a new salt) would change the user's session epoch and so end every
    /// session of theirs, at every restart for a user of the config file. Also says whether the
    /// password changed (a user who had none is not a change).
    pub fn into_record_keeping(self, existing: Option<&UserRecord>) -> Result<(UserRecord, bool), String> {
        let kept = existing.filter(|u| crate::crypto::verify_password(&u.password_hash, &self.password));
        let mut record = self.into_record(existing)?;
        if let Some(kept) = kept {
            record.password_hash.clone_from(&kept.password_hash);
        }
        Ok((record, existing.is_some() && kept.is_none()))
    }
}

/// RFC 6749 §3.1.2: an absolute URI without a fragment. Registered URIs are later compared by
/// exact string match, so nothing is normalised here.
fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let scheme_end = uri
        .find("://")
        .ok_or_else(|| format!("redirect URI {uri:?} is not absolute"))?;
    let scheme = &uri[..scheme_end];
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
        return Err(format!("redirect URI {uri:?} has no valid scheme"));
    }
    if uri.len() == scheme_end + 3 {
        return Err(format!("redirect URI {uri:?} has no host"));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("redirect URI {uri:?} contains whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            client_id: "app".into(),
            client_secret: "long-enough".into(),
            redirect_uris: vec!["http://127.0.0.1:3001/callback".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::ClientCredentials],
            scopes: vec!["read".into(), "write".into()],
            post_logout_redirect_uris: vec![],
            introspect: None,
            resource: None,
            rate_limit_per_sec: 0,
            refresh_tokens: RefreshPolicy::OfflineAccess,
        }
    }

    #[test]
    fn valid_spec_becomes_a_record_with_a_digest() {
        let key = ServerKey::from_bytes(&[1; 32]).unwrap();
        let r = spec().into_record(&key).unwrap();
        assert!(r.secret_digest.matches(&key.secret_digest("long-enough")));
        assert_eq!(ClientView::from(&r).scopes, ["read", "write"]);
    }

    #[test]
    fn only_resource_servers_introspect_unless_told() {
        let key = ServerKey::from_bytes(&[1; 32]).unwrap();
        assert!(
            !spec().into_record(&key).unwrap().introspect,
            "a client with grant types"
        );
        let rs = ClientSpec {
            grant_types: vec![],
            redirect_uris: vec![],
            resource: Some("https://api.example".into()),
            rate_limit_per_sec: 100,
            ..spec()
        }
        .into_record(&key)
        .unwrap();
        assert!(rs.introspect, "a resource server");
        assert_eq!(rs.resource.as_deref(), Some("https://api.example"));
        assert_eq!(ClientView::from(&rs).rate_limit_per_sec, 100);
        let told = ClientSpec {
            introspect: Some(true),
            refresh_tokens: RefreshPolicy::Always,
            ..spec()
        }
        .into_record(&key)
        .unwrap();
        assert!(told.introspect);
        assert_eq!(told.refresh, RefreshPolicy::Always);
    }

    #[test]
    fn invalid_specs_are_refused() {
        let key = ServerKey::from_bytes(&[1; 32]).unwrap();
        let bad = [
            ClientSpec {
                client_id: "".into(),
                ..spec()
            },
            ClientSpec {
                client_id: "has space".into(),
                ..spec()
            },
            ClientSpec {
                client_secret: "short".into(),
                ..spec()
            },
            ClientSpec {
                redirect_uris: vec!["/relative".into()],
                ..spec()
            },
            ClientSpec {
                redirect_uris: vec!["https://a.example/cb#frag".into()],
                ..spec()
            },
            ClientSpec {
                redirect_uris: vec![],
                ..spec()
            },
            ClientSpec {
                scopes: vec!["two words".into()],
                ..spec()
            },
            ClientSpec {
                scopes: vec!["bad\"quote".into()],
                ..spec()
            },
            ClientSpec {
                post_logout_redirect_uris: vec!["not a uri".into()],
                ..spec()
            },
            ClientSpec {
                resource: Some("https://api.example/#x".into()),
                ..spec()
            },
            ClientSpec {
                resource: Some("https://a b".into()),
                ..spec()
            },
        ];
        for s in bad {
            let id = s.client_id.clone();
            assert!(s.into_record(&key).is_err(), "accepted {id:?}");
        }
    }

    fn user(name: &str, password: &str) -> UserSpec {
        UserSpec {
            username: name.into(),
            password: password.into(),
            email: Some("alice@example.com".into()),
            name: None,
        }
    }

    #[test]
    fn users_get_a_password_hash_and_keep_their_sub() {
        let first = user("alice", "wonderland-42").into_record(None).unwrap();
        assert!(first.password_hash.starts_with("$argon2id$"));
        assert!(crate::crypto::verify_password(&first.password_hash, "wonderland-42"));
        assert!(!crate::crypto::verify_password(&first.password_hash, "wonderland-43"));
        let again = user("alice", "looking-glass").into_record(Some(&first)).unwrap();
        assert_eq!(again.sub, first.sub, "a password change keeps the subject");
        assert_ne!(again.password_hash, first.password_hash);
        assert!(!format!("{:?}", user("alice", "wonderland-42")).contains("wonderland"));
    }

    #[test]
    fn an_unchanged_password_keeps_its_hash() {
        let first = user("alice", "wonderland-42").into_record(None).unwrap();
        let mut renamed = user("alice", "wonderland-42");
        renamed.name = Some("Alice L.".into());
        let (again, changed) = renamed.into_record_keeping(Some(&first)).unwrap();
        assert_eq!(
            again.password_hash, first.password_hash,
            "so sessions survive a restart"
        );
        assert!(!changed);
        assert_eq!(again.sub, first.sub);
        assert_eq!(again.name.as_deref(), Some("Alice L."), "the other fields are updated");
        let (new, changed) = user("alice", "looking-glass")
            .into_record_keeping(Some(&first))
            .unwrap();
        assert!(changed);
        assert_ne!(new.password_hash, first.password_hash);
        assert!(crate::crypto::verify_password(&new.password_hash, "looking-glass"));
        assert!(
            user("alice", "short").into_record_keeping(Some(&first)).is_err(),
            "still validated"
        );
        let (_, changed) = user("bob", "a-new-password").into_record_keeping(None).unwrap();
        assert!(!changed, "a new user is not a password change");
    }

    #[test]
    fn invalid_users_are_refused() {
        for (name, pw) in [
            ("", "long-enough"),
            ("a b", "long-enough"),
            ("a:b", "long-enough"),
            ("a\0b", "long-enough"),
            ("alice", "short"),
        ] {
            assert!(user(name, pw).into_record(None).is_err(), "accepted {name:?}/{pw:?}");
        }
        let mut bad_mail = user("alice", "long-enough");
        bad_mail.email = Some("no-at-sign".into());
        assert!(bad_mail.into_record(None).is_err());
    }
}
