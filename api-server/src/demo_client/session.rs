//! Server-side sessions of the demo client: what one browser is doing (a sign-in in progress,
//! the tokens it obtained, the last API call, a message to show once), keyed by a random id
//! that is all the browser's cookie holds.
//!
//! Guarantees: tokens stay in this process and never reach the browser; a session unused for the
//! idle timeout is gone (it is treated as unknown on its next use and swept when the store
//! fills); the store never holds more than its bound, evicting the least recently used session
//! to make room. Times are passed in, so the rules are tested without sleeping.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::protocol::random_secret;

/// A sign-in the browser was sent off to Tessera for and has not come back from yet.
// No `Debug` here or on `Tokens` and `Session`: a stray `{:?}` in a log line must not print secrets.
#[derive(Clone)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// The tokens from the last successful token reply.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: String,
    pub expires_in: Option<u64>,
    pub obtained_at: Instant,
    /// Revoked at Tessera; the access token is kept so the user can watch the API refuse it.
    pub revoked: bool,
}

/// The last call to the demo API and what came back.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: &'static str,
    pub path: &'static str,
    /// `None` when no HTTP answer came (the API was unreachable).
    pub status: Option<u16>,
    pub www_authenticate: Option<String>,
    pub body: String,
}

/// One browser's state.
pub struct Session {
    /// Bound to this session for its whole life; every POST form must echo it.
    pub csrf: String,
    pub pending: Option<PendingLogin>,
    pub tokens: Option<Tokens>,
    pub last_call: Option<ApiCall>,
    /// Shown on the next page, then dropped (post/redirect/get).
    pub flash_error: Option<String>,
    pub flash_notice: Option<String>,
    /// When the refresh now under way started. A refresh token is good for one use: a second
    /// refresh sent with it (a double click) would be reuse, and Tessera would revoke the grant.
    refresh_started: Option<Instant>,
    last_seen: Instant,
}

impl Session {
    fn new(now: Instant) -> Self {
        Session {
            csrf: random_secret(),
            pending: None,
            tokens: None,
            last_call: None,
            flash_error: None,
            flash_notice: None,
            refresh_started: None,
            last_seen: now,
        }
    }

    /// The refresh token to use, unless a refresh is already under way (or there is none). A
    /// refresh that began over [`REFRESH_STALE`] ago is taken as abandoned: its request ended
    /// without reaching [`Session::end_refresh`].
    pub fn begin_refresh(&mut self, now: Instant) -> Result<String, RefreshRefused> {
        if self
            .refresh_started
            .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_STALE)
        {
            return Err(RefreshRefused::UnderWay);
        }
        let token = self
            .tokens
            .as_ref()
            .and_then(|t| t.refresh_token.clone())
            .ok_or(RefreshRefused::NoRefreshToken)?;
        self.refresh_started = Some(now);
        Ok(token)
    }

    pub fn end_refresh(&mut self) {
        self.refresh_started = None;
    }
}

/// Longer than the back channel's timeout, so a live refresh is never taken as abandoned.
pub const REFRESH_STALE: Duration = Duration::from_secs(15);

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshRefused {
    NoRefreshToken,
    UnderWay,
}

/// All sessions, bounded in count and idle time.
pub struct SessionStore {
    sessions: DashMap<String, Session>,
    max_sessions: usize,
    idle_timeout: Duration,
}

impl SessionStore {
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> Self {
        SessionStore {
            sessions: DashMap::new(),
            max_sessions: max_sessions.max(1),
            idle_timeout,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A new, empty session; returns its id.
    pub fn create(&self, now: Instant) -> String {
        self.make_room(now);
        let id = random_secret();
        self.sessions.insert(id.clone(), Session::new(now));
        id
    }

    /// Runs `f` on the session `id` if it exists and has not idled out, marking it used.
    /// An idled-out session is removed, so an old cookie can never revive it.
    pub fn with<R>(&self, id: &str, now: Instant, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        let expired = {
            let mut session = self.sessions.get_mut(id)?;
            if now.saturating_duration_since(session.last_seen) < self.idle_timeout {
                session.last_seen = now;
                return Some(f(&mut session));
            }
            true
        };
        // The guard above is dropped before removing: DashMap deadlocks on a held shard lock.
        if expired {
            self.sessions.remove(id);
        }
        None
    }

    /// Moves a live session to a fresh id (done when a sign-in completes, so an id that existed
    /// before the sign-in cannot be used to ride on it). Returns the new id.
    pub fn rotate(&self, id: &str, now: Instant) -> Option<String> {
        let (_, mut session) = self.sessions.remove(id)?;
        if now.saturating_duration_since(session.last_seen) >= self.idle_timeout {
            return None;
        }
        session.last_seen = now;
        let new_id = random_secret();
        self.sessions.insert(new_id.clone(), session);
        Some(new_id)
    }

    pub fn remove(&self, id: &str) -> Option<Session> {
        self.sessions.remove(id).map(|(_, s)| s)
    }

    /// Keeps the count under the bound before an insert: first drop idled-out sessions, then, if
    /// still full, the least recently used. Each step scans the map, but only when it is full.
    fn make_room(&self, now: Instant) {
        if self.sessions.len() < self.max_sessions {
            return;
        }
        let idle = self.idle_timeout;
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
        while self.sessions.len() >= self.max_sessions {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|entry| entry.value().last_seen)
                .map(|entry| entry.key().clone());
            match oldest {
                Some(id) => {
                    self.sessions.remove(&id);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_is_found_by_its_id_and_keeps_changes() {
        let store = SessionStore::new(10, HOUR);
        let now = Instant::now();
        let id = store.create(now);
        assert_eq!(id.len(), 43);
        store.with(&id, now, |s| s.flash_notice = Some("hi".into())).unwrap();
        let notice = store.with(&id, now, |s| s.flash_notice.take()).unwrap();
        assert_eq!(notice.as_deref(), Some("hi"));
        assert!(store.with("no-such-id", now, |_| ()).is_none());
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let store = SessionStore::new(10, HOUR);
        let now = Instant::now();
        let a = store.create(now);
        let b = store.create(now);
        let csrf_a = store.with(&a, now, |s| s.csrf.clone()).unwrap();
        let csrf_b = store.with(&b, now, |s| s.csrf.clone()).unwrap();
        assert_ne!(csrf_a, csrf_b);
        assert_eq!(csrf_a.len(), 43);
    }

    #[test]
    fn an_idle_session_expires_and_is_removed() {
        let store = SessionStore::new(10, HOUR);
        let start = Instant::now();
        let id = store.create(start);
        // Use keeps it alive past one timeout measured from creation.
        assert!(store.with(&id, start + HOUR / 2, |_| ()).is_some());
        assert!(store.with(&id, start + HOUR + HOUR / 4, |_| ()).is_some());
        // Then a full idle timeout without use ends it.
        assert!(store.with(&id, start + HOUR * 3, |_| ()).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn a_full_store_evicts_idle_sessions_first_then_the_least_recently_used() {
        let store = SessionStore::new(3, HOUR);
        let t0 = Instant::now();
        let stale = store.create(t0);
        let old = store.create(t0 + HOUR / 2);
        let recent = store.create(t0 + HOUR / 2);
        store.with(&recent, t0 + HOUR, |_| ()).unwrap();
        store
            .with(&old, t0 + HOUR / 2 + Duration::from_secs(1), |_| ())
            .unwrap();

        // At t0 + 1.1 h `stale` has idled out: it goes, nothing live does.
        let fourth = store.create(t0 + HOUR + HOUR / 10);
        assert_eq!(store.len(), 3);
        assert!(store.with(&stale, t0 + HOUR + HOUR / 10, |_| ()).is_none());

        // Nothing idle now: the least recently used live session (`old`) makes room.
        let now = t0 + HOUR + HOUR / 5;
        let fifth = store.create(now);
        assert_eq!(store.len(), 3);
        assert!(store.with(&old, now, |_| ()).is_none());
        for id in [&recent, &fourth, &fifth] {
            assert!(store.with(id, now, |_| ()).is_some());
        }
    }

    #[test]
    fn rotation_moves_the_session_to_a_new_id() {
        let store = SessionStore::new(10, HOUR);
        let now = Instant::now();
        let id = store.create(now);
        store.with(&id, now, |s| s.flash_notice = Some("kept".into())).unwrap();
        let new_id = store.rotate(&id, now).unwrap();
        assert_ne!(new_id, id);
        assert!(store.with(&id, now, |_| ()).is_none());
        assert_eq!(
            store.with(&new_id, now, |s| s.flash_notice.clone()).unwrap().as_deref(),
            Some("kept")
        );
        assert!(store.rotate(&new_id, now + HOUR * 2).is_none(), "idled out");
        assert!(store.is_empty());
    }

    #[test]
    fn one_refresh_at_a_time_per_session() {
        let t0 = Instant::now();
        let mut s = Session::new(t0);
        assert_eq!(s.begin_refresh(t0), Err(RefreshRefused::NoRefreshToken));
        s.tokens = Some(Tokens {
            access_token: "tsa_a".into(),
            token_type: "Bearer".into(),
            refresh_token: Some("tsr_r".into()),
            id_token: None,
            scope: "read".into(),
            expires_in: None,
            obtained_at: t0,
            revoked: false,
        });
        assert_eq!(s.begin_refresh(t0).as_deref(), Ok("tsr_r"));
        assert_eq!(
            s.begin_refresh(t0 + Duration::from_secs(1)),
            Err(RefreshRefused::UnderWay)
        );
        s.end_refresh();
        assert!(s.begin_refresh(t0 + Duration::from_secs(2)).is_ok());
        // Never ended (its request was dropped): abandoned after REFRESH_STALE.
        assert!(s.begin_refresh(t0 + Duration::from_secs(3)).is_err());
        assert!(s.begin_refresh(t0 + Duration::from_secs(2) + REFRESH_STALE).is_ok());
    }
}
