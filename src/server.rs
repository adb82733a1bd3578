//! Assembles a running server: opens the store, registers configured clients, starts the group
//! commit and the shards, binds HTTP, and writes the admin file.
//!
//! Up to three listeners: the public one (http, or https with `tls_cert`/`tls_key`), the admin
//! API on its own (the Unix socket `<data_dir>/admin.sock`, mode 0600, or `admin_bind`), and
//! `/metrics` on `metrics_bind` when set. The admin API is never on the public listener.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header;
use actix_web::{middleware, web, App, HttpServer};

use crate::actors::ShardRouter;
use crate::admin::{ClientSpec, UserSpec};
use crate::authority::{Authority, AuthorityConfig};
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::config::StoreChoice;
use crate::crypto::random_string;
use crate::datadir::{self, AdminFile};
use crate::feed::Feed;
use crate::http::{self, AppState};
use crate::operations::{ConfigOwned, Door, Operations};
use crate::signing::{KeyStoreError, SigningKeys};
pub use crate::store::pg::Holding;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error("opening the store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error("client {client_id:?} in the config: {reason}")]
    Client { client_id: String, reason: String },
    #[error("user {username:?} in the config: {reason}")]
    User { username: String, reason: String },
    #[error("signing keys: {0}")]
    Keys(#[from] KeyStoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("binding {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Everything but HTTP: the store, the shards over its partitions, the authority and the
/// operations layer. The server opens one and serves it; a management command on a stopped
/// server opens one for the command (the shards need an actix `System` either way).
pub struct Engine {
    pub store: Store,
    pub key: crate::crypto::ServerKey,
    pub authority: Authority,
    pub ops: Operations,
    pub feed: Feed,
}

impl Engine {
    /// Opens the data directory, loads the token partitions, starts the shards, and applies the
    /// config file's clients and users (through the operations layer, as `Door::Config`). Must be
    /// called inside an actix `System`.
    pub async fn open(settings: &Settings, issuer: Arc<str>, holding: Holding) -> Result<Engine, StartError> {
        crate::metrics::install();
        datadir::ensure_dir(&settings.data_dir)?;
        let key = datadir::load_server_key(settings.server_key.as_deref(), &settings.server_key_file)?;
        let store_err = |source| StartError::Store {
            dir: settings.data_dir.display().to_string(),
            source,
        };
        let store = match &settings.store {
            StoreChoice::Sled => Store::open(&settings.data_dir, settings.cache_bytes),
            StoreChoice::Postgres(url) => Store::connect(url, holding),
        }
        .map_err(store_err)?;
        // Where this node starts following the other nodes' changes: taken before the
        // partitions load, so that a change made while they load is not missed.
        let followed_from = store.changes().head();
        let cluster = match holding {
            Holding::Node => store.shared().map(|db| Cluster::new(db, &settings.cluster)),
            Holding::Sole => None,
        };
        let clients = store.clients().map_err(store_err)?;
        let users = store.users().map_err(store_err)?;
        let signing = SigningKeys::load_or_create(&settings.data_dir, settings.id_token_alg, crate::unix_now())?;
        let event_signing = SigningKeys::load_or_create(
            &settings.data_dir.join("events"),
            crate::signing::Algorithm::ES256,
            crate::unix_now(),
        )?;
        let partitions = store
            .partitions(settings.shards, crate::unix_now())
            .map_err(store_err)?;
        store.changes().set_capacity(settings.feed.log_max_events);
        let commit = Arc::new(store.group_commit(settings.commit_delay));
        let shards = ShardRouter::start(partitions, settings.shard_threads, commit, settings.sweep_interval);
        if let Some(cluster) = &cluster {
            cluster.follow(shards.clone(), followed_from, settings.cluster.poll_interval);
        }
        let authority = Authority::new(
            key.clone(),
            clients,
            users,
            shards,
            signing,
            event_signing,
            AuthorityConfig {
                issuer,
                access_ttl: settings.access_token_ttl,
                refresh_ttl: settings.refresh_token_ttl,
                code_ttl: settings.code_ttl,
                throttle: settings.throttle,
                audit: crate::audit::Audit::start(&settings.audit_log)?,
                limits: settings.limits.clone(),
                cache_hint: settings.feed.cache_hint,
                cluster,
            },
        );
        let feed = Feed::new(authority.clone(), Arc::clone(store.changes()), settings.feed.heartbeat);
        prune_changes(Arc::clone(store.changes()), settings.sweep_interval);
        let owned = ConfigOwned {
            file: settings.config_file.clone(),
            clients: settings.clients.iter().map(|c| c.client_id.clone()).collect(),
            users: settings.users.iter().map(|u| u.username.clone()).collect(),
        };
        let audit_file = match &settings.audit_log {
            crate::audit::AuditTarget::File(path) => Some(path.clone()),
            _ => None,
        };
        let ops = Operations::new(authority.clone(), owned, audit_file);
        seed(&ops, settings).await?;
        Ok(Engine {
            store,
            key,
            authority,
            ops,
            feed,
        })
    }
}

/// Changes pruned per step; between steps the thread serves other tasks.
const PRUNE_CHUNK: usize = 4096;

/// Prunes the change log of revocations whose tokens have all expired, every `interval`, on
/// the current arbiter.
fn prune_changes(changes: Arc<crate::store::ChangeLog>, interval: std::time::Duration) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            loop {
                match changes.prune(crate::unix_now(), PRUNE_CHUNK) {
                    Ok(n) if n == PRUNE_CHUNK => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "pruning the change log failed");
                        break;
                    }
                }
            }
        }
    });
}

/// Applies the config file's clients and users. Unchanged entries are left alone, so a restart
/// neither rewrites them nor ends their users' sessions.
async fn seed(ops: &Operations, settings: &Settings) -> Result<(), StartError> {
    for raw in &settings.clients {
        ops.put_client(ClientSpec::from(raw.clone()), Door::Config)
            .await
            .map_err(|e| StartError::Client {
                client_id: raw.client_id.clone(),
                reason: e.to_string(),
            })?;
    }
    for raw in &settings.users {
        let spec = UserSpec {
            username: raw.username.clone(),
            password: raw.password.clone(),
            email: raw.email.clone(),
            name: raw.name.clone(),
        };
        ops.put_user(spec, Door::Config, crate::unix_now())
            .await
            .map_err(|e| StartError::User {
                username: raw.username.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// A started server. Await (or spawn) `server`, the public listener, to run it;
/// `server.handle()` stops it, and `side.stop()` the admin and metrics listeners, which
/// `start` has already spawned.
pub struct Running {
    pub addr: SocketAddr,
    pub server: Server,
    pub store: Store,
    /// Where the admin API answers, as written to `admin.json` (`unix:/…` or `http://…`).
    pub admin: String,
    /// The metrics listener's address, when `metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub side: SideListeners,
    /// The audit log, to [`Audit::sync`](crate::audit::Audit::sync) once the server stopped.
    pub audit: crate::audit::Audit,
    /// The revocation feed; [`Feed::close`] ends its streams, which a graceful stop would
    /// otherwise wait for. SIGTERM and SIGINT close it.
    pub feed: Feed,
}

/// The admin and metrics listeners, running beside the public one.
pub struct SideListeners(Vec<ServerHandle>);

impl SideListeners {
    pub async fn stop(&self, graceful: bool) {
        for h in &self.0 {
            h.stop(graceful).await;
        }
    }
}

/// `Strict-Transport-Security` on every https response (RFC 6797): one year.
const HSTS: &str = "max-age=31536000";

/// Starts Tessera. Must be called inside an actix `System`.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let tls = settings
        .listeners
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    let (listener, addr) = bind_tcp(&settings.bind)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer: Arc<str> = settings
        .issuer
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}").into());
    let Engine {
        store,
        key,
        authority,
        ops,
        feed,
    } = Engine::open(&settings, Arc::clone(&issuer), Holding::Node).await?;
    close_feed_on_signal(feed.clone());

    let audit = authority.audit().clone();
    let admin_token = random_string("tsadm_", 32);
    let state = web::Data::new(AppState {
        authority,
        ops,
        admin_digest: key.admin_digest(&admin_token),
        session_ttl: settings.session_ttl.as_secs(),
        feed: feed.clone(),
    });
    let limits = http::InputLimits::from_settings(&settings);
    let metrics_public = settings.listeners.metrics_bind.is_none();
    let hsts = tls.is_some();

    let server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .wrap(middleware::from_fn(http::edge))
                .wrap(middleware::Condition::new(
                    hsts,
                    middleware::DefaultHeaders::new().add((header::STRICT_TRANSPORT_SECURITY, HSTS)),
                ))
                .configure(http::configure(state.clone(), limits, metrics_public))
        }
    })
    .workers(settings.workers)
    // Slow clients (http::extract has the body's deadline): a head must arrive in time, a
    // closing connection may linger a second, and each worker holds a bounded number.
    .client_request_timeout(settings.request_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .max_connections(settings.max_connections)
    .backlog(2048)
    .shutdown_timeout(10);
    let bind_err = |source| StartError::Bind {
        bind: settings.bind.clone(),
        source,
    };
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config).map_err(bind_err)?,
        None => server.listen(listener).map_err(bind_err)?,
    };

    let (admin_server, admin) = admin_listener(&settings, state.clone())?;
    let mut side = vec![admin_server.handle()];
    actix_web::rt::spawn(admin_server);
    let metrics_addr = match &settings.listeners.metrics_bind {
        Some(bind) => {
            let (metrics_server, metrics_addr) = metrics_listener(bind)?;
            side.push(metrics_server.handle());
            actix_web::rt::spawn(metrics_server);
            tracing::info!(addr = %metrics_addr, "metrics listening");
            Some(metrics_addr)
        }
        None => None,
    };

    datadir::write_admin(
        &settings.data_dir,
        &AdminFile {
            url: format!("{scheme}://{addr}"),
            admin: admin.clone(),
            token: admin_token,
        },
    )?;
    tracing::info!(%addr, issuer = %issuer, admin = %admin, shards = settings.shards, shard_threads = settings.shard_threads, workers = settings.workers, "tessera listening");
    Ok(Running {
        addr,
        server: server.run(),
        store,
        admin,
        metrics_addr,
        side: SideListeners(side),
        audit,
        feed,
    })
}

/// Ends the feed's streams when the process is asked to stop (actix-web stops the listeners on
/// the same signals), so that the graceful stop does not wait for subscribers to hang up.
fn close_feed_on_signal(feed: Feed) {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    actix_web::rt::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::warn!("cannot listen for stop signals; feed streams end at the stop timeout");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        feed.close();
    });
}

fn bind_tcp(bind: &str) -> Result<(std::net::TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind {
        bind: bind.to_owned(),
        source,
    };
    let listener = std::net::TcpListener::bind(bind).map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    Ok((listener, addr))
}

/// The admin API's own server (one worker): on `admin_bind` over TCP, or else on the Unix socket
/// `<data_dir>/admin.sock` with mode 0600. Returns it (not yet spawned) and where it answers.
/// Either way each request still needs the bearer credential of `admin.json`.
fn admin_listener(settings: &Settings, state: web::Data<AppState>) -> Result<(Server, String), StartError> {
    let limits = http::InputLimits::from_settings(settings);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(http::edge))
            .configure(http::configure_admin(state.clone(), limits))
    })
    .workers(1)
    .shutdown_timeout(5);
    if let Some(bind) = &settings.listeners.admin_bind {
        let (listener, addr) = bind_tcp(bind)?;
        let err = |source| StartError::Bind {
            bind: bind.clone(),
            source,
        };
        return Ok((server.listen(listener).map_err(err)?.run(), format!("http://{addr}")));
    }
    let path = datadir::admin_socket_path(&settings.data_dir);
    let listener = bind_private_socket(&path)?;
    let err = |source| StartError::Bind {
        bind: path.display().to_string(),
        source,
    };
    let shown = std::fs::canonicalize(&path).map_err(err)?;
    let server = server.listen_uds(listener).map_err(err)?.run();
    Ok((server, format!("{}{}", datadir::UNIX_PREFIX, shown.display())))
}

/// Binds the Unix socket at `path` and makes it mode 0600. A socket left there is stale: this
/// process holds sled's lock on the data directory, so no live server can be using it. The
/// directory is mode 0700, so nobody else can connect between the bind and the chmod.
fn bind_private_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, StartError> {
    let err = |source| StartError::Bind {
        bind: path.display().to_string(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale admin socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// `/metrics` on its own server (one worker) at `bind`; the public listener then answers 404.
fn metrics_listener(bind: &str) -> Result<(Server, SocketAddr), StartError> {
    let (listener, addr) = bind_tcp(bind)?;
    let server = HttpServer::new(|| {
        App::new()
            .wrap(middleware::from_fn(http::edge))
            .configure(http::configure_metrics_only)
    })
    .workers(1)
    .shutdown_timeout(5)
    .listen(listener)
    .map_err(|source| StartError::Bind {
        bind: bind.to_owned(),
        source,
    })?
    .run();
    Ok((server, addr))
}
