//! The backend's own runtime and connection pool, for callers that are not async.
//!
//! Every query goes to one runtime thread that drives the pool's connections; the caller
//! blocks on a plain channel until the answer comes. That works from any thread, including
//! one that drives a runtime of its own (a shard's), where blocking on a runtime would panic.
//! Every query is bounded by [`QUERY_TIMEOUT`], so a database that stops answering gives an
//! error, not a caller stuck for ever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// The longest one query (or one group commit) may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at most: one for group commit, the rest for loads, sweeps and registries.
const POOL_SIZE: usize = 8;

#[derive(Debug, thiserror::Error)]
enum IoError {
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the database URL is not valid: {0}")]
    Url(String),
    #[error("the storage runtime stopped")]
    Stopped,
}

fn io_error(e: IoError) -> StoreError {
    StoreError::Io(Arc::new(e))
}

pub struct Io {
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// A connection taken out of the pool to hold a session lock for as long as this lives.
    held: std::sync::Mutex<Option<ClientWrapper>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Io {
    pub fn start(url: &str) -> Result<Io, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| io_error(IoError::Url(e.to_string())))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| io_error(IoError::Url(e.to_string())))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(Arc::new(e)))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tessera-pg".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Io(Arc::new(e)))?;
        Ok(Io {
            handle,
            pool,
            held: std::sync::Mutex::new(None),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `job` with a pooled connection on the runtime thread, within [`QUERY_TIMEOUT`],
    /// and hands its result to `reply` there.
    fn spawn<T, F, Fut>(&self, job: F, reply: impl FnOnce(Result<T, StoreError>) + Send + 'static)
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let pool = self.pool.clone();
        self.handle.spawn(async move {
            let work = async move {
                let client = pool.get().await?;
                job(client).await
            };
            reply(match tokio::time::timeout(QUERY_TIMEOUT, work).await {
                Ok(result) => result,
                Err(_) => Err(io_error(IoError::Timeout(QUERY_TIMEOUT))),
            });
        });
    }

    /// Runs `job` with a pooled connection on the runtime thread and waits for its result.
    pub fn run<T, F, Fut>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(job, move |result| {
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| Err(io_error(IoError::Stopped)))
    }

    /// Like [`run`](Self::run), for an async caller: the returned future resolves with the
    /// job's result and may be awaited on any executor. Dropping it does not cancel the job.
    pub fn call<T, F, Fut>(&self, job: F) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        self.spawn(job, move |result| {
            let _ = tx.send(result);
        });
        async move { rx.await.unwrap_or_else(|_| Err(io_error(IoError::Stopped))) }
    }

    /// Like [`run`](Self::run), for a job that streams rows: `job` sends each through `rows`
    /// (bounded, so a large result is never all in memory), and `visit` takes them here, on the
    /// caller's thread, as they come.
    pub fn stream<R, F, Fut>(
        &self,
        job: F,
        visit: &mut dyn FnMut(R) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Object, std::sync::mpsc::SyncSender<R>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send,
    {
        let (rows_tx, rows) = std::sync::mpsc::sync_channel::<R>(1024);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let pool = self.pool.clone();
        self.handle.spawn(async move {
            let result = async move {
                let client = pool.get().await?;
                job(client, rows_tx).await
            }
            .await;
            let _ = done_tx.send(result);
        });
        let mut visited = Ok(());
        for row in rows {
            if visited.is_ok() {
                visited = visit(row);
            }
        }
        done.recv().unwrap_or_else(|_| Err(io_error(IoError::Stopped)))?;
        visited
    }
}

impl Io {
    /// Takes the session-level advisory lock `key` (shared with other sessions that take it
    /// shared, or alone) on a connection of its own and holds it until this `Io` is dropped
    /// (PostgreSQL releases it when the connection closes). Tries for up to `wait` (a process
    /// that stopped a moment ago may still hold it); `Ok(false)` if another session kept it.
    pub fn hold_lock(&self, key: i64, wait: Duration, shared: bool) -> Result<bool, StoreError> {
        let take = if shared {
            "SELECT pg_try_advisory_lock_shared($1)"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let deadline = std::time::Instant::now() + wait;
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = async move {
                let client = pool.get().await?;
                loop {
                    let row = client.query_one(take, &[&key]).await?;
                    if row.get::<_, bool>(0) {
                        return Ok(Some(Object::take(client)));
                    }
                    if std::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            .await;
            let _ = tx.send(result);
        });
        let held = rx.recv().unwrap_or_else(|_| Err(io_error(IoError::Stopped)))?;
        let got = held.is_some();
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        Ok(got)
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
