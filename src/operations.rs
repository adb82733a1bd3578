//! The one door for changes to clients, users and keys. Config seeding at start, the CLI on a
//! stopped server and the admin API of a running one all call these operations, so every change
//! is validated, audited and followed by its revocations in one place:
//!
//! - removing a client revokes every token and code it holds and forgets the consents given to
//!   it, so a client registered again under the same id starts clean;
//! - removing a user, or changing their password, revokes every token and code issued on their
//!   behalf (and, through the session's password epoch, ends their browser sessions);
//! - clients and users defined in the config file belong to it: the CLI and the admin API refuse
//!   to change or remove them (the next start would silently undo the change).
//!
//! Each operation is `async` because revocation goes through the token shards; on a stopped
//! server the CLI starts the shards in-process for the command (see `server::Engine`).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::admin::{ClientSpec, ClientView, UserSpec, UserView};
use crate::audit::AuditEvent;
use crate::authority::{Authority, AuthorityError, GrantSummary, Revoked};
use crate::signing::Algorithm;

/// Through which door a change came; the audit log's `actor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The config file, applied at start. The only door to config-owned entries.
    Config,
    /// `tessera …` on a stopped server.
    Cli,
    /// The admin API of a running server (used by the CLI while the server runs).
    AdminApi,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Config => "config",
            Door::Cli => "cli",
            Door::AdminApi => "admin-api",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request is not valid; the sentence is for an administrator.
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The entry is defined in the config file.
    #[error("{kind} {name:?} is defined in the config file {file}; change it there (a change made here would be undone at the next start)")]
    ConfigOwned {
        kind: &'static str,
        name: String,
        file: String,
    },
    #[error(transparent)]
    Authority(#[from] AuthorityError),
}

impl From<crate::store::StoreError> for OpError {
    fn from(e: crate::store::StoreError) -> Self {
        OpError::Authority(e.into())
    }
}

/// The names the config file owns.
#[derive(Debug, Clone, Default)]
pub struct ConfigOwned {
    pub file: Option<PathBuf>,
    pub clients: HashSet<String>,
    pub users: HashSet<String>,
}

/// What Tessera holds about one user (a data-subject export).
#[derive(Debug, Serialize)]
pub struct UserExport {
    pub profile: UserView,
    pub consents: Vec<ConsentExport>,
    /// Live grants by client id.
    pub grants: std::collections::BTreeMap<String, Vec<GrantSummary>>,
    /// The audit events about the user still in the audit log, oldest first.
    pub audit_events: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct ConsentExport {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: u64,
}

#[derive(Clone)]
pub struct Operations {
    authority: Authority,
    owned: std::sync::Arc<ConfigOwned>,
    audit_log: Option<PathBuf>,
}

/// Audit events an export includes at most, the most recent ones.
const EXPORT_AUDIT_EVENTS: usize = 1000;

impl Operations {
    pub fn new(authority: Authority, owned: ConfigOwned, audit_log: Option<PathBuf>) -> Self {
        Operations {
            authority,
            owned: std::sync::Arc::new(owned),
            audit_log,
        }
    }

    fn guard(&self, door: Door, kind: &'static str, name: &str) -> Result<(), OpError> {
        let owned = match kind {
            "client" => &self.owned.clients,
            _ => &self.owned.users,
        };
        if door != Door::Config && owned.contains(name) {
            return Err(OpError::ConfigOwned {
                kind,
                name: name.to_owned(),
                file: self
                    .owned
                    .file
                    .as_ref()
                    .map_or_else(|| "in use".into(), |f| f.display().to_string()),
            });
        }
        Ok(())
    }

    fn audit(&self, event: AuditEvent) {
        self.authority.audit().emit(event);
    }

    pub fn list_clients(&self) -> Vec<ClientView> {
        self.authority
            .clients()
            .list()
            .iter()
            .map(|c| ClientView::from(&**c))
            .collect()
    }

    /// Creates or replaces a client.
    pub async fn put_client(&self, spec: ClientSpec, door: Door) -> Result<ClientView, OpError> {
        self.guard(door, "client", &spec.client_id)?;
        let record = spec.into_record(self.authority.key()).map_err(OpError::Invalid)?;
        let view = ClientView::from(&record);
        let existing = self.authority.clients().get(&record.client_id);
        if existing.as_deref() == Some(&record) {
            return Ok(view);
        }
        let existed = existing.is_some();
        self.authority.clients().upsert(record)?;
        let event = if existed { "client_changed" } else { "client_created" };
        self.audit(
            AuditEvent::new(event, "success")
                .actor(door.as_str())
                .target(&view.client_id),
        );
        Ok(view)
    }

    /// Removes a client, revokes everything it holds and forgets the consents given to it.
    pub async fn remove_client(&self, client_id: &str, door: Door, now: u64) -> Result<Revoked, OpError> {
        self.guard(door, "client", client_id)?;
        if !self.authority.clients().remove(client_id)? {
            return Err(OpError::NotFound("client"));
        }
        // Removed from the registry first: from here on it cannot authenticate, so nothing new
        // is issued to it while its tokens go.
        let revoked = self.authority.revoke_client_tokens(client_id, now).await?;
        self.authority.users().forget_client(client_id)?;
        self.authority.limits().forget_client(client_id);
        self.audit(
            AuditEvent::new("client_removed", "success")
                .actor(door.as_str())
                .target(client_id),
        );
        Ok(revoked)
    }

    /// Revokes every token and code of a client; the client stays.
    pub async fn revoke_client(&self, client_id: &str, door: Door, now: u64) -> Result<Revoked, OpError> {
        if self.authority.clients().get(client_id).is_none() {
            return Err(OpError::NotFound("client"));
        }
        let revoked = self.authority.revoke_client_tokens(client_id, now).await?;
        self.audit(
            AuditEvent::new("client_tokens_revoked", "success")
                .actor(door.as_str())
                .target(client_id),
        );
        Ok(revoked)
    }

    pub fn list_users(&self) -> Result<Vec<UserView>, OpError> {
        Ok(self.authority.users().list()?.iter().map(UserView::from).collect())
    }

    /// Creates or replaces a user. A new password revokes every token of the user; the same
    /// password keeps the stored hash, so nothing ends (config seeding re-applies its users at
    /// every start). Hashing and verifying take tens of milliseconds of CPU, so they run on the
    /// blocking pool.
    pub async fn put_user(&self, spec: UserSpec, door: Door, now: u64) -> Result<UserView, OpError> {
        self.guard(door, "user", &spec.username)?;
        let users = self.authority.users().clone();
        let existing = users.get(&spec.username)?;
        let before = existing.clone();
        let (record, new_password) = tokio::task::spawn_blocking(move || spec.into_record_keeping(existing.as_ref()))
            .await
            .map_err(|e| OpError::Authority(AuthorityError::Internal(format!("hashing a password: {e}"))))?
            .map_err(OpError::Invalid)?;
        if before.as_ref() == Some(&record) {
            return Ok(UserView::from(&record));
        }
        let existed = before.is_some();
        users.upsert(&record)?;
        if new_password {
            self.authority.revoke_subject(&record.sub, now).await?;
        }
        let mut event = AuditEvent::new(if existed { "user_changed" } else { "user_created" }, "success")
            .actor(door.as_str())
            .target(&record.username)
            .subject(&record.sub);
        if new_password {
            event = event.reason("password changed");
        }
        self.audit(event);
        Ok(UserView::from(&record))
    }

    /// Sets a user's password, keeping the rest of their profile; see [`put_user`](Self::put_user).
    pub async fn set_password(
        &self,
        username: &str,
        password: String,
        door: Door,
        now: u64,
    ) -> Result<UserView, OpError> {
        let Some(user) = self.authority.users().get(username)? else {
            return Err(OpError::NotFound("user"));
        };
        let spec = UserSpec {
            username: user.username,
            password,
            email: user.email,
            name: user.name,
        };
        self.put_user(spec, door, now).await
    }

    /// Removes a user and their consents, and revokes every token issued on their behalf.
    pub async fn remove_user(&self, username: &str, door: Door, now: u64) -> Result<Revoked, OpError> {
        self.guard(door, "user", username)?;
        let Some(user) = self.authority.users().get(username)? else {
            return Err(OpError::NotFound("user"));
        };
        self.authority.users().remove(username)?;
        let revoked = self.authority.revoke_subject(&user.sub, now).await?;
        self.audit(
            AuditEvent::new("user_removed", "success")
                .actor(door.as_str())
                .target(username)
                .subject(&user.sub),
        );
        Ok(revoked)
    }

    /// Revokes every token issued on behalf of a user; the user stays.
    pub async fn revoke_user(&self, username: &str, door: Door, now: u64) -> Result<Revoked, OpError> {
        let Some(user) = self.authority.users().get(username)? else {
            return Err(OpError::NotFound("user"));
        };
        let revoked = self.authority.revoke_subject(&user.sub, now).await?;
        self.audit(
            AuditEvent::new("user_tokens_revoked", "success")
                .actor(door.as_str())
                .target(username)
                .subject(&user.sub),
        );
        Ok(revoked)
    }

    /// Everything Tessera holds about a user: profile, consents, live grants by client, and the
    /// audit events about them still in the audit log.
    pub async fn export_user(&self, username: &str, now: u64) -> Result<UserExport, OpError> {
        let Some(user) = self.authority.users().get(username)? else {
            return Err(OpError::NotFound("user"));
        };
        let consents = self
            .authority
            .users()
            .consents_of(username)?
            .into_iter()
            .map(|(client_id, c)| ConsentExport {
                client_id,
                scopes: c.scopes,
                granted_at: c.granted_at,
            })
            .collect();
        let grants = self.authority.grants_of(&user.sub, now).await?;
        let audit_events = match &self.audit_log {
            Some(path) => audit_events_about(path, &user.username, &user.sub),
            None => Vec::new(),
        };
        Ok(UserExport {
            profile: UserView::from(&user),
            consents,
            grants,
            audit_events,
        })
    }

    /// Adds a new ID-token signing key and retires the current one; returns the new key id.
    pub async fn rotate_key(&self, alg: Algorithm, door: Door, now: u64) -> Result<String, OpError> {
        let authority = self.authority.clone();
        let kid = tokio::task::spawn_blocking(move || authority.rotate_signing_key(alg, now))
            .await
            .map_err(|e| OpError::Authority(AuthorityError::Internal(format!("generating a key: {e}"))))??;
        self.audit(
            AuditEvent::new("key_rotated", "success")
                .actor(door.as_str())
                .target(&kid),
        );
        Ok(kid)
    }
}

/// The last [`EXPORT_AUDIT_EVENTS`] events of the audit log whose actor, target or subject is the
/// user. A missing or unreadable log gives none: the export is about what is held, and the log
/// may have been rotated away.
fn audit_events_about(path: &std::path::Path, username: &str, sub: &str) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let about = |e: &serde_json::Value| {
        ["actor", "target"].iter().any(|f| e[*f].as_str() == Some(username)) || e["subject"].as_str() == Some(sub)
    };
    let mut events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains(username) || l.contains(sub))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(about)
        .collect();
    let skip = events.len().saturating_sub(EXPORT_AUDIT_EVENTS);
    events.drain(..skip);
    events
}
