//! The revocation feed: what each resource server may see of the change log, as Security Event
//! Tokens (RFC 8417) signed with Tessera's keys, so that caches of introspection answers can drop
//! a revoked token at once instead of when their entry expires.
//!
//! # What a subscriber sees
//! Only changes that reach it: about tokens without an audience, or whose audience includes the
//! subscriber's resource indicator (the rule introspection applies, `store::Reach`). Tokens and
//! grants are named by the same public ids introspection answers carry (`jti`, `grant_id`),
//! users by their `sub`, clients by their id; never by a digest.
//!
//! # Shapes (README, "The revocation feed")
//! One token: the Tessera type [`TOKEN_REVOKED`] with an opaque subject. A grant, a user or a
//! client: CAEP's `session-revoked` with an RFC 9493 subject (a complex subject naming the
//! session, `iss_sub`, a complex subject naming the application). A subscriber that must drop
//! its whole cache: the Tessera type [`FEED_RESET`].
//!
//! # Costs
//! A SET is signed once, whatever the number of subscribers: signatures are kept by sequence
//! number for a while. Signing runs on the blocking pool, not on an HTTP worker, and with the
//! feed's own ES256 key (in the JWKS beside the ID-token keys): an RS256 signature takes about
//! 2 ms here, and under load the feed fell seconds behind a revocation rate ES256 keeps up with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::authority::{Authority, AuthorityError, GRANT_ID, TOKEN_ID};
use crate::store::{Change, ChangeLog, ClientRecord, Revoked};

pub const TOKEN_REVOKED: &str = "urn:tessera:secevent:token-revoked";
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const FEED_RESET: &str = "urn:tessera:secevent:feed-reset";
/// Every event type the feed sends, for discovery.
pub const EVENT_TYPES: [&str; 3] = [TOKEN_REVOKED, SESSION_REVOKED, FEED_RESET];
/// Most events one read returns.
pub const MAX_BATCH: usize = 1000;
/// Signed SETs kept for later subscribers, by sequence number.
const SIGNED_KEPT: usize = 4096;

/// One event for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub reset: bool,
    /// The compact JWS.
    pub set: Arc<str>,
}

/// What a read gave one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The position to read after next time.
    pub next: u64,
    pub more: bool,
}

/// Cheap to clone: every HTTP worker holds one.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    authority: Authority,
    changes: Arc<ChangeLog>,
    signed: Mutex<HashMap<u64, Arc<str>>>,
    heartbeat: std::time::Duration,
    metrics: crate::metrics::FeedMetrics,
    /// Set once when the server stops, so that open streams end instead of holding the
    /// shutdown up.
    closed: watch::Sender<bool>,
}

impl Feed {
    pub fn new(authority: Authority, changes: Arc<ChangeLog>, heartbeat: std::time::Duration) -> Feed {
        Feed {
            inner: Arc::new(Inner {
                authority,
                changes,
                signed: Mutex::new(HashMap::new()),
                heartbeat,
                metrics: crate::metrics::FeedMetrics::register(),
                closed: watch::channel(false).0,
            }),
        }
    }

    pub fn heartbeat(&self) -> std::time::Duration {
        self.inner.heartbeat
    }

    pub fn metrics(&self) -> &crate::metrics::FeedMetrics {
        &self.inner.metrics
    }

    /// The number of the last change.
    pub fn head(&self) -> u64 {
        self.inner.changes.head()
    }

    /// Sees the head move.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changes.watch()
    }

    /// Sees the feed close (the server is stopping).
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// Ends every open stream.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Whether `caller` may subscribe: a client that may introspect.
    pub fn admits(caller: &ClientRecord) -> Result<(), AuthorityError> {
        if caller.introspect {
            Ok(())
        } else {
            Err(crate::oauth::OAuthError::InvalidClient.into())
        }
    }

    /// Up to `max` events for `caller` after position `after`, signed. A position the log
    /// cannot serve gives one reset event.
    pub async fn read(&self, caller: &ClientRecord, after: u64, max: usize) -> Result<Batch, AuthorityError> {
        let resource = caller.resource.clone();
        let max = max.clamp(1, MAX_BATCH);
        let read = self
            .inner
            .changes
            .read(after, max, |c| c.reach.reaches(resource.as_deref()))?;
        if read.reset {
            let claims = reset_claims(self.inner.authority.issuer(), read.next, crate::unix_now());
            let set = self.sign(vec![claims]).await?.pop().unwrap_or_default();
            return Ok(Batch {
                events: vec![Event {
                    seq: read.next,
                    reset: true,
                    set: set.into(),
                }],
                next: read.next,
                more: false,
            });
        }
        let mut events = Vec::with_capacity(read.changes.len());
        let mut unsigned = Vec::new();
        {
            let signed = self.inner.signed.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, change) in &read.changes {
                match signed.get(seq) {
                    Some(set) => events.push(Event {
                        seq: *seq,
                        reset: false,
                        set: Arc::clone(set),
                    }),
                    None => unsigned.push((*seq, change)),
                }
            }
        }
        if !unsigned.is_empty() {
            let a = &self.inner.authority;
            let claims = unsigned
                .iter()
                .map(|(seq, change)| change_claims(a, *seq, change))
                .collect();
            let sets = self.sign(claims).await?;
            let mut signed = self.inner.signed.lock().unwrap_or_else(|p| p.into_inner());
            if signed.len() + sets.len() > SIGNED_KEPT {
                signed.clear();
            }
            for ((seq, _), set) in unsigned.iter().zip(sets) {
                let set: Arc<str> = set.into();
                signed.insert(*seq, Arc::clone(&set));
                events.push(Event {
                    seq: *seq,
                    reset: false,
                    set,
                });
            }
            events.sort_by_key(|e| e.seq);
        }
        Ok(Batch {
            events,
            next: read.next,
            more: read.more,
        })
    }

    /// Signs each set of claims as a SET, off the HTTP workers (an RSA signature takes a
    /// millisecond or more).
    async fn sign(&self, claims: Vec<Value>) -> Result<Vec<String>, AuthorityError> {
        let authority = self.inner.authority.clone();
        let signed = tokio::task::spawn_blocking(move || {
            claims
                .iter()
                .map(|c| authority.sign_event(c))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| AuthorityError::Internal(format!("signing events: {e}")))?;
        signed
    }
}

/// The claims of the SET for change `seq`.
pub fn change_claims(authority: &Authority, seq: u64, change: &Change) -> Value {
    let issuer = authority.issuer();
    let key = authority.key();
    let (event_type, subject) = match &change.revoked {
        Revoked::Token(digest) => (
            TOKEN_REVOKED,
            json!({ "format": "opaque", "id": key.opaque_id(TOKEN_ID, digest) }),
        ),
        Revoked::Family(family) => (
            SESSION_REVOKED,
            json!({ "format": "complex",
                    "session": { "format": "opaque", "id": key.opaque_id(GRANT_ID, family) } }),
        ),
        Revoked::Subject(sub) => (
            SESSION_REVOKED,
            json!({ "format": "iss_sub", "iss": issuer, "sub": sub }),
        ),
        Revoked::Client(client_id) => (
            SESSION_REVOKED,
            json!({ "format": "complex", "application": { "format": "opaque", "id": client_id } }),
        ),
    };
    json!({
        "iss": issuer,
        "iat": change.at,
        "jti": seq.to_string(),
        "sub_id": subject,
        "events": { event_type: { "event_timestamp": change.at } },
    })
}

/// The claims of a reset SET: the subscriber resumes after `next`.
pub fn reset_claims(issuer: &str, next: u64, now: u64) -> Value {
    json!({
        "iss": issuer,
        "iat": now,
        "jti": format!("reset-{next}"),
        "events": { FEED_RESET: { "event_timestamp": now, "next": next.to_string() } },
    })
}
