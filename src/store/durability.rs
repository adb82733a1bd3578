//! Group commit: many writers, one `fsync`.
//!
//! A writer applies its change to sled (in memory), then awaits [`GroupCommit::durable`]. A
//! single flusher thread collects every waiter registered since its last flush, calls
//! `sled::Db::flush` once, and wakes them all. Because a waiter registers only after its write
//! was applied, the flush that wakes it started after the write, and so covered it.
//!
//! Under load the batch grows by itself: while one flush runs, the next batch gathers. At rest a
//! lone write is flushed at once, with no timer to wait for.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::StoreError;
use crate::metrics as m;

type Waiter = oneshot::Sender<Result<(), Arc<sled::Error>>>;

struct Queue {
    waiters: Vec<Waiter>,
    shutdown: bool,
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
    pub fn start(db: sled::Db) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiters: Vec::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tessera-flush".into())
            .spawn(move || flush_loop(&worker, &db))
            .expect("spawning the flusher thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// Resolves once every write applied before this call is on disk.
    pub fn durable(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiters.push(tx);
        }
        self.shared.wake.notify_one();
        async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Sled((*e).clone())),
                Err(_) => Err(StoreError::FlusherGone),
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flush_loop(shared: &Shared, db: &sled::Db) {
    loop {
        let (batch, stop) = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.waiters.is_empty() && !q.shutdown {
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            (std::mem::take(&mut q.waiters), q.shutdown)
        };
        let started = Instant::now();
        let result = db.flush().map(|_| ()).map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, "group commit flush failed");
        }
        if !batch.is_empty() {
            m::flush_observed(batch.len(), started.elapsed());
        }
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

    #[actix_rt::test]
    async fn concurrent_waiters_all_complete() {
        let store = crate::store::Store::temporary().unwrap();
        let commit = Arc::new(GroupCommit::start(store.db().clone()));
        let mut waits = Vec::new();
        for i in 0..200u32 {
            store.db().insert(i.to_be_bytes(), &[1u8][..]).unwrap();
            waits.push(commit.durable());
        }
        for w in waits {
            w.await.unwrap();
        }
    }
}
