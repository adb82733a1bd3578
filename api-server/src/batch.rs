//! Concurrent cache misses share introspection calls: a miss is asked about at once while
//! fewer than [`MAX_IN_FLIGHT`] calls are out; past that, misses wait for the next call to
//! come back and go together, up to [`MAX_BATCH`] tokens, in one call to Tessera's batch
//! endpoint. A lone miss never waits; a storm of misses (a cold start, a cache emptied by a
//! reset, a flood of new tokens) costs Tessera a few calls instead of one per token.
//!
//! Guarantees:
//! - each token gets the verdict Tessera gave for it, or the error of the call that carried it;
//! - a call slot is given back when its call ends, even if the request that made it is dropped
//!   (a guard), so slots cannot leak;
//! - the queue is bounded ([`MAX_QUEUED`]); past it a miss makes its own call;
//! - a Tessera without the batch endpoint (404, 405) is asked one token at a time from then on.
//!
//! Singling out one token's call from another's is the cache's business (its single-flight
//! coalesces misses of one token); this only groups misses of different tokens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use metrics::Histogram;
use tokio::sync::oneshot;

use crate::introspect::{Introspector, UpstreamError, Verdict};

/// Calls to Tessera out at once before misses start to wait and group.
pub const MAX_IN_FLIGHT: usize = 4;
/// Tokens one call carries: Tessera's bound on a batch.
pub const MAX_BATCH: usize = 50;
/// Misses waiting at most; more make their own calls.
pub const MAX_QUEUED: usize = 10_000;

type Reply = oneshot::Sender<Result<Verdict, UpstreamError>>;

struct Waiting {
    token: String,
    reply: Reply,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    queue: Vec<Waiting>,
}

/// Shared by every worker; cheap to clone.
#[derive(Clone)]
pub struct Batcher(Arc<Inner>);

struct Inner {
    introspector: Introspector,
    /// Off: every miss makes its own call, as before batching.
    enabled: bool,
    /// Cleared when Tessera has no batch endpoint.
    batch_endpoint: AtomicBool,
    state: Mutex<State>,
    /// Tokens per call to Tessera.
    size: Histogram,
}

/// A call slot; given back (and the queue handed on) when dropped.
struct Slot(Batcher);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl Batcher {
    pub fn new(introspector: Introspector, enabled: bool) -> Batcher {
        Batcher(Arc::new(Inner {
            introspector,
            enabled,
            batch_endpoint: AtomicBool::new(true),
            state: Mutex::new(State::default()),
            size: metrics::histogram!(crate::metrics::UPSTREAM_BATCH_SIZE),
        }))
    }

    pub fn introspector(&self) -> &Introspector {
        &self.0.introspector
    }

    /// Tessera's verdict on `token`, in a call of its own or in a batch with other misses.
    pub async fn introspect(&self, token: &str) -> Result<Verdict, UpstreamError> {
        let inner = &*self.0;
        if !inner.enabled {
            inner.size.record(1.0);
            return inner.introspector.introspect(token).await;
        }
        let waiting = {
            let mut s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.in_flight < MAX_IN_FLIGHT || s.queue.len() >= MAX_QUEUED {
                s.in_flight += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                s.queue.push(Waiting {
                    token: token.to_owned(),
                    reply,
                });
                Some(answer)
            }
        };
        match waiting {
            Some(answer) => answer.await.unwrap_or_else(|_| {
                Err(UpstreamError::Transport(
                    "the batch carrying this token was dropped".into(),
                ))
            }),
            None => {
                let _slot = Slot(self.clone());
                inner.size.record(1.0);
                inner.introspector.introspect(token).await
            }
        }
    }

    /// A call ended: its slot goes to the waiting misses, as one batch, or back to the pool.
    fn call_ended(&self) {
        let batch = {
            let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.queue.is_empty() {
                s.in_flight -= 1;
                return;
            }
            let take = s.queue.len().min(MAX_BATCH);
            s.queue.drain(..take).collect::<Vec<_>>()
        };
        let slot = Slot(self.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    slot.0.send(batch).await;
                    drop(slot);
                });
            }
            // No runtime (the process is ending): the waiters' requests end with it.
            Err(_) => drop(batch),
        }
    }

    /// Sends one batch and hands out the verdicts.
    async fn send(&self, batch: Vec<Waiting>) {
        let inner = &*self.0;
        if batch.len() > 1 && inner.batch_endpoint.load(Ordering::Relaxed) {
            let tokens: Vec<&str> = batch.iter().map(|w| w.token.as_str()).collect();
            match inner.introspector.introspect_batch(&tokens).await {
                Ok(Some(verdicts)) => {
                    inner.size.record(batch.len() as f64);
                    for (w, v) in batch.into_iter().zip(verdicts) {
                        let _ = w.reply.send(Ok(v));
                    }
                    return;
                }
                Ok(None) => {
                    tracing::info!("Tessera has no batch introspection; asking one token at a time");
                    inner.batch_endpoint.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    for w in batch {
                        let _ = w.reply.send(Err(e.clone()));
                    }
                    return;
                }
            }
        }
        let calls = batch.into_iter().map(|w| async move {
            inner.size.record(1.0);
            let _ = w.reply.send(inner.introspector.introspect(&w.token).await);
        });
        futures_util::future::join_all(calls).await;
    }
}
