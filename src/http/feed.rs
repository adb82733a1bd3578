//! The revocation feed's endpoints: a stream of server-sent events, and the same events by
//! polling (RFC 8936-style). Both authenticate the resource server as introspection does and
//! read through [`Feed`]; neither holds feed logic.
//!
//! A stream reads the log only when the connection has room for more (actix pulls the body as
//! the socket drains), so a slow subscriber holds no buffer here: it falls behind in the log
//! and catches up from it, or is told to reset.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Serialize;

use super::error::ApiError;
use super::oauth::authenticate;
use super::{routes, AppState};
use crate::feed::{Batch, Feed};
use crate::oauth::OAuthError;

/// Events a stream reads at a time.
const STREAM_BATCH: usize = 100;
/// Events a poll returns unless it asks for another number.
const POLL_DEFAULT: usize = 100;

/// A position as a subscriber sends it: a decimal sequence number.
fn position(value: &str) -> Result<u64, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| OAuthError::invalid_request("an event id is a decimal number").into())
}

/// `after` and `max` from the query string.
fn poll_params(query: &str) -> Result<(Option<u64>, usize), ApiError> {
    let form = |e: crate::oauth::FormError| ApiError::from(super::extract::InputError::from(e));
    let pairs = crate::oauth::Pairs::parse(query.as_bytes(), &[]).map_err(form)?;
    let after = pairs.one("after").map_err(form)?.map(position).transpose()?;
    let max = match pairs.one("max").map_err(form)? {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|&m| m > 0)
            .ok_or_else(|| OAuthError::invalid_request("max is a positive number"))?,
        None => POLL_DEFAULT,
    };
    Ok((after, max.min(crate::feed::MAX_BATCH)))
}

#[derive(Serialize)]
struct PollAnswer {
    /// Sequence number → SET (RFC 8936 §2.4 keys them by their `jti`; Tessera's SETs use the
    /// sequence number, which orders them).
    sets: std::collections::BTreeMap<String, String>,
    #[serde(rename = "moreAvailable")]
    more_available: bool,
    last: String,
}

/// `GET /oauth/revocations?after=<seq>&max=<n>`: the events after `after` (none without it: the
/// answer then only says where the head is).
pub async fn poll(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let client = authenticate(&state, &req, routes::REVOCATIONS, None, None)?;
    Feed::admits(&client)?;
    let (after, max) = poll_params(req.query_string())?;
    let batch = match after {
        Some(after) => state.feed.read(&client, after, max).await?,
        None => Batch {
            events: Vec::new(),
            next: state.feed.head(),
            more: false,
        },
    };
    state.feed.metrics().polled.increment(batch.events.len() as u64);
    let answer = PollAnswer {
        sets: batch
            .events
            .iter()
            .map(|e| (e.seq.to_string(), e.set.to_string()))
            .collect(),
        more_available: batch.more,
        last: batch.next.to_string(),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

/// One batch as server-sent events.
fn render(batch: &Batch) -> Bytes {
    let mut out = String::new();
    for e in &batch.events {
        let kind = if e.reset { "reset" } else { "revocation" };
        out.push_str(&format!("id: {}\nevent: {kind}\ndata: {}\n\n", e.seq, e.set));
    }
    Bytes::from(out)
}

/// Where a stream is, between two reads.
struct Cursor {
    feed: Feed,
    client: std::sync::Arc<crate::store::ClientRecord>,
    at: u64,
    head: tokio::sync::watch::Receiver<u64>,
    closed: tokio::sync::watch::Receiver<bool>,
    /// Nothing sent yet: the first item is the `: ready` line.
    opened: bool,
}

impl Cursor {
    /// The next bytes to send: the next events, or a heartbeat after a quiet interval; `None`
    /// when the server stops.
    async fn next(&mut self) -> Option<Result<Bytes, actix_web::Error>> {
        if !self.opened {
            self.opened = true;
            return Some(Ok(Bytes::from_static(b": ready\n\n")));
        }
        loop {
            if *self.closed.borrow() {
                return None;
            }
            // Marked seen before the read, so a change published during it wakes the wait below.
            self.head.borrow_and_update();
            if self.feed.head() != self.at {
                let batch = match self.feed.read(&self.client, self.at, STREAM_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the change log for a stream failed");
                        return None;
                    }
                };
                self.at = batch.next;
                if !batch.events.is_empty() {
                    self.feed.metrics().streamed.increment(batch.events.len() as u64);
                    return Some(Ok(render(&batch)));
                }
                if batch.more {
                    continue;
                }
            }
            tokio::select! {
                _ = self.head.changed() => {}
                _ = self.closed.changed() => return None,
                _ = tokio::time::sleep(self.feed.heartbeat()) => {
                    return Some(Ok(Bytes::from_static(b": hb\n\n")));
                }
            }
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.feed.metrics().streams.decrement(1.0);
    }
}

/// `GET /oauth/revocations/stream`: events as they happen, after `Last-Event-ID` (or
/// `?after=`) when given, else from now on.
pub async fn stream(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let client = authenticate(&state, &req, routes::REVOCATIONS_STREAM, None, None)?;
    Feed::admits(&client)?;
    let resume = match req.headers().get("last-event-id") {
        Some(v) => Some(position(v.to_str().unwrap_or(""))?),
        None => poll_params(req.query_string())?.0,
    };
    let feed = state.feed.clone();
    feed.metrics().streams.increment(1.0);
    let cursor = Cursor {
        at: resume.unwrap_or_else(|| feed.head()),
        head: feed.watch(),
        closed: feed.closed(),
        feed,
        client,
        opened: false,
    };
    let body = stream::unfold(cursor, |mut c| async move { c.next().await.map(|item| (item, c)) });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_parameters_are_bounded_and_checked() {
        assert_eq!(poll_params("").unwrap(), (None, POLL_DEFAULT));
        assert_eq!(poll_params("after=42&max=7").unwrap(), (Some(42), 7));
        assert_eq!(poll_params("after=1&max=999999").unwrap().1, crate::feed::MAX_BATCH);
        for bad in ["after=x", "after=-1", "max=0", "max=a", "after=1&after=2"] {
            assert!(poll_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_render_as_server_sent_events() {
        let batch = Batch {
            events: vec![
                crate::feed::Event {
                    seq: 7,
                    reset: false,
                    set: "a.b.c".into(),
                },
                crate::feed::Event {
                    seq: 9,
                    reset: true,
                    set: "d.e.f".into(),
                },
            ],
            next: 9,
            more: false,
        };
        assert_eq!(
            render(&batch),
            "id: 7\nevent: revocation\ndata: a.b.c\n\nid: 9\nevent: reset\ndata: d.e.f\n\n"
        );
    }
}
