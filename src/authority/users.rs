//! Users: sign-in with throttling, remembered consent, and userinfo (OpenID Connect Core §5.3).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::throttle::Admission;
use super::{Authority, AuthorityError, SignedIn};
use crate::audit::AuditEvent;
use crate::metrics as m;
use crate::oauth::Scope;
use crate::store::TokenType;

/// What a sign-in attempt came to. The two failures carry no hint of whether the username
/// exists.
#[derive(Debug)]
pub enum LoginOutcome {
    SignedIn(SignedIn),
    /// Wrong username or password; the answer was already held back by the throttle's delay.
    Failed,
    /// Too many failures for this username or address; try again after this many seconds.
    Locked {
        retry_after: u64,
    },
    /// Every password check was taken for longer than [`PASSWORD_CHECK_WAIT`]; the attempt was
    /// not checked and not counted. Try again after this many seconds.
    Busy {
        retry_after: u64,
    },
}

/// How a sign-in attempt ended, for its metric and audit event.
#[derive(Clone, Copy)]
enum Attempt {
    Success,
    /// The password was checked and wrong.
    Failure,
    Locked,
    /// No password check was free in time.
    Busy,
}

/// How long a sign-in waits for a password check to be free before it is answered `Busy`.
/// Waiters are served in order and cost no CPU. With one check per core and argon2id at
/// 20–40 ms, two seconds cover a queue of about a hundred sign-ins on two cores: the 64 users
/// of the `code-flow` load campaign all signing in at once wait at most about a second.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(2);

/// What a userinfo request came to (the HTTP layer maps these to RFC 6750 §3 answers).
#[derive(Debug, PartialEq)]
pub enum UserInfo {
    Claims(Value),
    /// Missing, unknown, expired or revoked token, or not an access token of a user.
    InvalidToken,
    /// A user's access token without the `openid` scope.
    InsufficientScope,
}

impl Authority {
    /// Checks a username and password, with throttling. A failure is reserved in the throttle
    /// before the password is checked, so concurrent attempts for one name share its
    /// allowance. The check runs on the blocking pool (argon2id takes tens of milliseconds of
    /// CPU and 19 MiB) under a permit of `password_checks`, at most one per core; an attempt
    /// that cannot get one within [`PASSWORD_CHECK_WAIT`] is answered `Busy` and gives its
    /// reservation back. An unknown username is checked against a decoy hash, so both
    /// failures take the same time.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        addr: Option<IpAddr>,
        now: u64,
    ) -> Result<LoginOutcome, AuthorityError> {
        let throttle = &self.inner.throttle;
        let reservation = match throttle.reserve(username, addr, now) {
            Admission::Admitted(r) => r,
            Admission::Locked { retry_after } => {
                self.record_sign_in(Attempt::Locked, username, None);
                return Ok(LoginOutcome::Locked { retry_after });
            }
        };
        let user = self.inner.users.get(username)?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.inner.decoy_password.clone(), |u| u.password_hash.clone());
        let permits = Arc::clone(&self.inner.password_checks);
        let Ok(Ok(permit)) = tokio::time::timeout(PASSWORD_CHECK_WAIT, permits.acquire_owned()).await else {
            throttle.give_back(reservation);
            self.record_sign_in(Attempt::Busy, username, None);
            return Ok(LoginOutcome::Busy {
                retry_after: PASSWORD_CHECK_WAIT.as_secs().max(1),
            });
        };
        let offered = password.to_owned();
        // The permit moves into the check: if this request goes away, the check still runs to
        // its end and holds its place until then.
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::crypto::verify_password(&hash, &offered)
        })
        .await
        .map_err(|e| AuthorityError::Internal(format!("password check failed: {e}")))?;
        match user {
            Some(user) if matches => {
                throttle.succeeded(reservation);
                self.record_sign_in(Attempt::Success, &user.username, Some(&user.sub));
                tracing::info!(username = ?user.username, "user signed in");
                Ok(LoginOutcome::SignedIn(SignedIn {
                    epoch: self.session_epoch(&user.password_hash),
                    username: user.username,
                    sub: user.sub,
                    auth_time: now,
                }))
            }
            _ => {
                let delay = throttle.failed(reservation);
                self.record_sign_in(Attempt::Failure, username, None);
                tracing::debug!(username = ?username, "sign-in failed");
                if delay > Duration::ZERO {
                    tokio::time::sleep(delay).await;
                }
                Ok(LoginOutcome::Failed)
            }
        }
    }

    /// Counts a sign-in attempt (`tessera_sign_ins_total{result}`) and writes its audit
    /// event, in which the user acts on their own account. Only the username is written, never
    /// what was typed as the password.
    fn record_sign_in(&self, attempt: Attempt, username: &str, sub: Option<&str>) {
        let (result, event) = match attempt {
            Attempt::Success => ("success", AuditEvent::new("sign_in", "success")),
            Attempt::Failure => ("failure", AuditEvent::new("sign_in", "failure")),
            Attempt::Locked => ("locked", AuditEvent::new("sign_in_locked", "refused")),
            Attempt::Busy => ("busy", AuditEvent::new("sign_in_busy", "refused")),
        };
        m::sign_in(result);
        let event = event.actor(username).target(username);
        self.inner.audit.emit(match sub {
            Some(sub) => event.subject(sub),
            None => event,
        });
    }

    /// A short tag of a user's password hash under the server key. A session carries the tag
    /// of the password it was opened with; a new password (or a removed user) makes it stale.
    /// The tag reveals nothing of the hash without the key.
    fn session_epoch(&self, password_hash: &str) -> String {
        use base64::Engine as _;
        let tag = self.inner.key.tag("session-epoch", password_hash.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..12])
    }

    /// Whether a session is still good: its user exists, is the same person (`sub`), and has
    /// the password the session was opened with.
    pub fn session_valid(&self, session: &SignedIn) -> Result<bool, AuthorityError> {
        let Some(user) = self.inner.users.get(&session.username)? else {
            return Ok(false);
        };
        let epoch = self.session_epoch(&user.password_hash);
        Ok(user.sub == session.sub && crate::crypto::tags_match(epoch.as_bytes(), session.epoch.as_bytes()))
    }

    /// Whether `username` still has to approve `scope` for `client_id`.
    pub fn needs_consent(&self, username: &str, client_id: &str, scope: &Scope) -> Result<bool, AuthorityError> {
        let given = self.inner.users.consent(username, client_id)?;
        Ok(!given.is_some_and(|c| scope.is_subset_of(&c.scopes)))
    }

    pub fn remember_consent(
        &self,
        username: &str,
        client_id: &str,
        scope: &Scope,
        now: u64,
    ) -> Result<(), AuthorityError> {
        Ok(self
            .inner
            .users
            .remember_consent(username, client_id, scope.tokens(), now)?)
    }

    /// The claims about the user that `access_token` was issued for, by its scopes: `sub`
    /// always, `name` and `preferred_username` with `profile`, `email` with `email`.
    pub async fn userinfo(&self, access_token: &str, now: u64) -> Result<UserInfo, AuthorityError> {
        let Some(digest) = self.presented_digest(access_token) else {
            return Ok(UserInfo::InvalidToken);
        };
        let Some(record) = self.live_token(digest, now).await? else {
            return Ok(UserInfo::InvalidToken);
        };
        let c = &record.claims;
        let (TokenType::Access, Some(sub), Some(username)) = (c.token_type, &c.sub, &c.username) else {
            return Ok(UserInfo::InvalidToken);
        };
        let scope = Scope::parse(&c.scope)?;
        if !scope.contains("openid") {
            return Ok(UserInfo::InsufficientScope);
        }
        // A user removed since the token was issued has no claims to give.
        let Some(user) = self.inner.users.get(username).ok().flatten().filter(|u| &u.sub == sub) else {
            return Ok(UserInfo::InvalidToken);
        };
        let mut claims = json!({ "sub": sub });
        if scope.contains("profile") {
            claims["preferred_username"] = json!(user.username);
            if let Some(name) = &user.name {
                claims["name"] = json!(name);
            }
        }
        if scope.contains("email") {
            if let Some(email) = &user.email {
                claims["email"] = json!(email);
                // Tessera takes addresses from its administrator and does not verify them.
                claims["email_verified"] = json!(false);
            }
        }
        Ok(UserInfo::Claims(claims))
    }
}
