//! Group commit: many writers, one `fsync`.
//!
//! A writer applies its change to the backend, then takes a [`Durable`] from
//! [`GroupCommit::durable`] and awaits it. A single flusher thread collects every waiter
//! registered since its last flush, calls [`Backend::flush`] once, and wakes them all. Because a
//! waiter registers only after its write was applied, the flush that wakes it started after the
//! write, and so covered it.
//!
//! A `Durable` can be handed to another thread and awaited there: a shard takes it and returns
//! it in its reply, so the flusher wakes the HTTP worker that waits for the answer directly,
//! and the shard thread is not woken a second time for the write.
//!
//! Under load the batch grows by itself: while one flush runs, the next batch gathers. At rest a
//! lone write is flushed at once, with no timer to wait for.
//!
//! # Commit delay
//! A flush costs far more CPU than the writes it covers: sled hands the write to an I/O
//! thread, and the sync exits to the hypervisor on a virtual machine. Measured alone, about
//! 110 µs of CPU per flush against 8–13 µs per insert (BENCHMARKS.md). When a server is
//! CPU-bound, fewer and larger flushes leave more CPU for requests. So after a flush that
//! covered at least [`COMMIT_SIBLINGS`] writers, a sign that many writes are in flight, the
//! flusher pauses for the configured commit delay before it takes the next batch (the same
//! trade as PostgreSQL's `commit_delay` with `commit_siblings`). A lone writer, or a few, never
//! waits for the pause.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::Backend;
use super::StoreError;
use crate::metrics as m;

/// Writers one flush must have covered for the flusher to pause before the next.
pub const COMMIT_SIBLINGS: usize = 8;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

struct Queue {
    waiters: Vec<Waiter>,
    shutdown: bool,
    /// The flusher is waiting on the condvar. Only then does a new waiter need to wake it: a
    /// busy flusher looks at the queue again when its flush is done.
    idle: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Handle to the flusher. Dropping the last handle flushes what is pending and stops the thread.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the flusher over `backend`. `commit_delay` is the pause after a flush that
    /// covered at least [`COMMIT_SIBLINGS`] writers; zero never pauses.
    pub fn start(backend: Arc<dyn Backend>, commit_delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiters: Vec::new(),
                shutdown: false,
                idle: false,
            }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tessera-flush".into())
            .spawn(move || flush_loop(&worker, &*backend, commit_delay))
            .expect("spawning the flusher thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// A future that resolves once every write applied before this call is on disk.
    pub fn durable(&self) -> Durable {
        let (tx, rx) = oneshot::channel();
        self.enqueue([tx]);
        Durable(rx)
    }

    /// Adds waiters to the next batch, all at once, and wakes the flusher if it is idle.
    fn enqueue(&self, waiters: impl IntoIterator<Item = Waiter>) {
        let wake = {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiters.extend(waiters);
            std::mem::take(&mut q.idle)
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// Resolves when the writes applied before it was taken are on disk: `Ok`, the flush's error,
/// or [`StoreError::FlusherGone`] if the flusher stopped first.
#[must_use = "a write is not durable until its Durable resolves"]
pub struct Durable(oneshot::Receiver<Result<(), StoreError>>);

impl Future for Durable {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(result) => result,
            Err(_) => Err(StoreError::FlusherGone),
        })
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).shutdown = true;
        // Unconditionally: shutdown is not a waiter, and the flusher must see it even if idle
        // was already taken by a writer whose wake-up has not arrived yet.
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flush_loop(shared: &Shared, backend: &dyn Backend, commit_delay: Duration) {
    let mut pause = false;
    loop {
        if pause {
            // A flusher that is not idle is not woken by writers, so this sleeps the whole pause.
            std::thread::sleep(commit_delay);
        }
        let (batch, stop) = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.waiters.is_empty() && !q.shutdown {
                q.idle = true;
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            q.idle = false;
            (std::mem::take(&mut q.waiters), q.shutdown)
        };
        let started = Instant::now();
        let result = backend.flush();
        if let Err(e) = &result {
            tracing::error!(error = %e, "group commit flush failed");
        }
        if !batch.is_empty() {
            m::flush_observed(batch.len(), started.elapsed());
        }
        pause = !commit_delay.is_zero() && batch.len() >= COMMIT_SIBLINGS;
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause follows only a flush that covered many writers. The margins are wide (a flush
    /// of a temporary store takes microseconds, the pause half a second): this checks which
    /// writes wait, not how fast anything is.
    #[actix_rt::test]
    async fn only_a_flush_of_many_writers_is_followed_by_the_pause() {
        let pause = Duration::from_millis(500);
        let store = crate::store::Store::temporary().unwrap();
        let commit = store.group_commit(pause);
        let started = Instant::now();
        commit.durable().await.unwrap();
        commit.durable().await.unwrap();
        assert!(started.elapsed() < pause / 2, "lone writers never wait for the pause");
        // Enqueued at once, so that one flush covers them all.
        let (senders, many): (Vec<_>, Vec<_>) = (0..COMMIT_SIBLINGS).map(|_| oneshot::channel()).unzip();
        commit.enqueue(senders);
        for w in many {
            Durable(w).await.unwrap();
        }
        let after_many = Instant::now();
        commit.durable().await.unwrap();
        assert!(
            after_many.elapsed() >= pause * 3 / 5,
            "the write after a flush of {COMMIT_SIBLINGS} writers waited for the pause"
        );
        let started = Instant::now();
        commit.durable().await.unwrap();
        assert!(
            started.elapsed() < pause / 2,
            "a flush of one is not followed by the pause"
        );
    }

    #[actix_rt::test]
    async fn concurrent_waiters_all_complete() {
        let store = crate::store::Store::temporary().unwrap();
        let commit = Arc::new(store.group_commit(Duration::from_micros(500)));
        let mut part = store.partitions(1, 0).unwrap().pop().unwrap();
        let mut waits = Vec::new();
        for i in 0..200u8 {
            part.insert(
                &crate::crypto::TokenDigest([i; 32]),
                crate::store::TokenRecord::test_record(100),
            )
            .unwrap();
            waits.push(commit.durable());
        }
        for w in waits {
            w.await.unwrap();
        }
    }
}
