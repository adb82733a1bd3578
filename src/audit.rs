//! The audit log: one JSON object per line for every security event (tokens issued, refreshed and
//! revoked, replays and reuse, sign-ins, changes to clients, users and keys, rate limiting).
//!
//! Guarantees:
//! - **Writing never blocks a request.** [`Audit::emit`] puts the event on a bounded channel and
//!   returns; one writer thread formats the time, serialises and writes. When the channel is
//!   full the event is dropped and counted (`tessera_audit_events_dropped_total`), so a slow
//!   disk costs audit lines, never latency. The writer is never woken by a sender: it drains
//!   the channel, and sleeps [`IDLE`] when it finds it empty, so an event costs the request a
//!   queue slot, not a futex wake-up and a context switch (at thousands of issuances a second,
//!   waking the writer per event cost more than a fifth of the server's CPU per issuance).
//!   A line reaches the file within about [`IDLE`] of its event.
//! - **No token, code, secret or password is ever an event's field.** Events name clients,
//!   users, subjects and grants (a grant by its opaque id, `ServerKey::opaque_id`), never a
//!   credential; the types here take no token.
//! - **Every event carries the request it came from**: its id and the client's address, read
//!   from the request context the HTTP layer sets for the request's task
//!   ([`RequestContext::scope`]), so an operator can follow one request end to end.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

/// Events waiting for the writer; past this, new events are dropped and counted. At the
/// writer's [`IDLE`] pause this holds 800,000 events a second.
const QUEUE: usize = 8192;
/// How long the writer sleeps when it finds no event.
pub const IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    File(PathBuf),
    Stdout,
    /// Nowhere (`audit_log = "off"`: for measuring what the log costs, and for benches).
    Off,
}

impl AuditTarget {
    /// `-` is standard output, `off` nowhere; anything else a file path.
    pub fn parse(value: &str) -> Self {
        match value {
            "-" => AuditTarget::Stdout,
            "off" => AuditTarget::Off,
            path => AuditTarget::File(path.into()),
        }
    }
}

/// The request an event belongs to, set by the HTTP layer for the task that serves it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub client_addr: Option<IpAddr>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

impl RequestContext {
    /// Runs `fut` with this context current, so events it emits carry it.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        REQUEST.scope(self, fut).await
    }

    /// The context of the request being served on this task, if any.
    pub fn current() -> Option<RequestContext> {
        REQUEST.try_with(Clone::clone).ok()
    }

    /// The client address of the request being served on this task: `None` outside a request,
    /// `Some(None)` for a request whose peer is unknown. Copies no id.
    pub fn current_addr() -> Option<Option<IpAddr>> {
        REQUEST.try_with(|c| c.client_addr).ok()
    }
}

/// One security event. Built with [`AuditEvent::new`] and the setters, sent with
/// [`Audit::emit`].
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// When the event was emitted; written as RFC 3339, UTC, by the writer thread.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub event: &'static str,
    /// `success`, `failure` or `refused`.
    pub outcome: &'static str,
    /// Who acted: a client id, a username, or the door a change came through (`config`, `cli`,
    /// `admin-api`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What the event is about: a client id, a username, a grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The grant (token family), by its opaque id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditEvent {
    pub fn new(event: &'static str, outcome: &'static str) -> Self {
        AuditEvent {
            time: SystemTime::UNIX_EPOCH,
            event,
            outcome,
            actor: None,
            target: None,
            client_addr: None,
            request_id: None,
            grant_type: None,
            client_id: None,
            subject: None,
            grant: None,
            reason: None,
        }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn grant_type(mut self, grant_type: &'static str) -> Self {
        self.grant_type = Some(grant_type);
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn subject(mut self, sub: impl Into<String>) -> Self {
        self.subject = Some(sub.into());
        self
    }

    pub fn grant(mut self, grant: impl Into<String>) -> Self {
        self.grant = Some(grant.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// What the writer is sent: an event, or a request to confirm that everything before it is
/// written ([`Audit::sync`]). Events travel unboxed: a `Sync` is sent once per process, and
/// boxing the event would cost an allocation on the request path for every one.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Event(AuditEvent),
    Sync(SyncSender<()>),
}

/// The sending side of the audit log. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: Option<SyncSender<Entry>>,
    dropped: metrics::Counter,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("on", &self.tx.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

impl Audit {
    /// Opens the target (a file is created with mode 0600 and appended to) and starts the
    /// writer thread.
    pub fn start(target: &AuditTarget) -> Result<Self, AuditError> {
        let dropped = metrics::counter!(crate::metrics::AUDIT_DROPPED);
        let out: Box<dyn Write + Send> = match target {
            AuditTarget::Off => return Ok(Audit { tx: None, dropped }),
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(path) => Box::new(open_append(path)?),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("tessera-audit".into())
            .spawn(move || write_loop(rx, out))
            .map_err(|source| AuditError {
                path: "<thread>".into(),
                source,
            })?;
        Ok(Audit { tx: Some(tx), dropped })
    }

    /// An audit log that writes nothing.
    pub fn off() -> Self {
        Audit {
            tx: None,
            dropped: metrics::counter!(crate::metrics::AUDIT_DROPPED),
        }
    }

    /// Stamps the event with the time and the current request, and queues it without waiting.
    pub fn emit(&self, mut event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        event.time = SystemTime::now();
        if let Some(ctx) = RequestContext::current() {
            event.request_id.get_or_insert(ctx.request_id);
            if event.client_addr.is_none() {
                event.client_addr = ctx.client_addr;
            }
        }
        match tx.try_send(Entry::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.increment(1),
        }
    }

    /// Waits, at most `wait`, until every event emitted before the call is written and flushed;
    /// whether it was. For the end of a process (a CLI command, the server's stop), whose
    /// last events would otherwise be lost with the writer thread. Blocks: not for requests.
    pub fn sync(&self, wait: std::time::Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack, done) = mpsc::sync_channel(1);
        tx.send(Entry::Sync(ack)).is_ok() && done.recv_timeout(wait).is_ok()
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AuditError {
            path: path.to_owned(),
            source,
        })
}

/// Writes events as they come and flushes whenever the queue runs empty, then sleeps [`IDLE`]:
/// under load, a flush covers every event of the pause. Ends, flushed, once every sender is gone.
fn write_loop(rx: Receiver<Entry>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    let mut report = |what: &str, e: std::io::Error| {
        if !failed {
            tracing::error!(error = %e, "{what} the audit log failed");
            failed = true;
        }
    };
    loop {
        match rx.try_recv() {
            Ok(Entry::Event(event)) => {
                let written = serde_json::to_writer(&mut out, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|_| out.write_all(b"\n"));
                if let Err(e) = written {
                    report("writing", e);
                }
            }
            Ok(Entry::Sync(ack)) => {
                if let Err(e) = out.flush() {
                    report("flushing", e);
                }
                let _ = ack.send(());
            }
            Err(TryRecvError::Empty) => {
                if let Err(e) = out.flush() {
                    report("flushing", e);
                }
                std::thread::sleep(IDLE);
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    let _ = out.flush();
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let at = time::OffsetDateTime::from(*at);
    match at.format(&time::format_description::well_known::Rfc3339) {
        Ok(text) => s.serialize_str(&text),
        Err(_) => s.serialize_i64(at.unix_timestamp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_lines(path: &Path, want: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if lines.len() >= want {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the audit log did not get {want} lines");
    }

    #[actix_rt::test]
    async fn events_are_json_lines_with_their_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::start(&AuditTarget::File(path.clone())).unwrap();
        audit.emit(AuditEvent::new("key_rotated", "success").actor("cli"));
        let ctx = RequestContext {
            request_id: "req-1".into(),
            client_addr: Some("10.1.2.3".parse().unwrap()),
        };
        let a = audit.clone();
        ctx.scope(async move {
            a.emit(
                AuditEvent::new("token_issued", "success")
                    .actor("app")
                    .grant_type("client_credentials"),
            )
        })
        .await;
        let lines = read_lines(&path, 2);
        assert_eq!(lines[0]["event"], "key_rotated");
        assert!(lines[0].get("request_id").is_none(), "no request, no id");
        assert_eq!(lines[1]["request_id"], "req-1");
        assert_eq!(lines[1]["client_addr"], "10.1.2.3");
        assert_eq!(lines[1]["grant_type"], "client_credentials");
        assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn sync_returns_once_the_events_before_it_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::start(&AuditTarget::File(path.clone())).unwrap();
        for n in 0..100 {
            audit.emit(AuditEvent::new("user_created", "success").target(format!("user-{n}")));
        }
        assert!(audit.sync(std::time::Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100, "every event before the sync is on disk");
        assert!(Audit::off().sync(std::time::Duration::ZERO));
    }

    #[test]
    fn the_targets_parse() {
        assert_eq!(AuditTarget::parse("-"), AuditTarget::Stdout);
        assert_eq!(AuditTarget::parse("off"), AuditTarget::Off);
        assert_eq!(AuditTarget::parse("/x/a.log"), AuditTarget::File("/x/a.log".into()));
        Audit::off().emit(AuditEvent::new("nothing", "success"));
    }
}
