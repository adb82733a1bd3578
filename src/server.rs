//! Assembles a running server: opens the store, registers configured clients, starts the group
//! commit and the shards, binds HTTP, and writes the admin file.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};

use crate::actors::ShardRouter;
use crate::admin::{ClientSpec, UserSpec};
use crate::authority::{Authority, AuthorityConfig};
use crate::config::Settings;
use crate::crypto::random_string;
use crate::datadir::{self, AdminFile};
use crate::http::{self, AppState};
use crate::operations::{ConfigOwned, Door, Operations};
use crate::signing::{KeyStoreError, SigningKeys};
use crate::store::{GroupCommit, Store, StoreError};

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
}

/// Everything but HTTP: the store, the shards over its partitions, the authority and the
/// operations layer. The server opens one and serves it; a management command on a stopped
/// server opens one for the command (the shards need an actix `System` either way).
pub struct Engine {
    pub store: Store,
    pub key: crate::crypto::ServerKey,
    pub authority: Authority,
    pub ops: Operations,
}

impl Engine {
    /// Opens the data directory, loads the token partitions, starts the shards, and applies the
    /// config file's clients and users (through the operations layer, as `Door::Config`). Must be
    /// called inside an actix `System`.
    pub async fn open(settings: &Settings, issuer: Arc<str>) -> Result<Engine, StartError> {
        crate::metrics::install();
        datadir::ensure_dir(&settings.data_dir)?;
        let key = datadir::load_server_key(settings.server_key.as_deref(), &settings.server_key_file)?;
        let store_err = |source| StartError::Store {
            dir: settings.data_dir.display().to_string(),
            source,
        };
        let store = Store::open(&settings.data_dir, settings.cache_bytes).map_err(store_err)?;
        let clients = store.clients().map_err(store_err)?;
        let users = store.users().map_err(store_err)?;
        let signing = SigningKeys::load_or_create(&settings.data_dir, settings.id_token_alg, crate::unix_now())?;
        let partitions = store
            .partitions(settings.shards, crate::unix_now())
            .map_err(store_err)?;
        let commit = Arc::new(GroupCommit::start(store.db().clone(), settings.commit_delay));
        let shards = ShardRouter::start(partitions, settings.shard_threads, commit, settings.sweep_interval);
        let authority = Authority::new(
            key.clone(),
            clients,
            users,
            shards,
            signing,
            AuthorityConfig {
                issuer,
                access_ttl: settings.access_token_ttl,
                refresh_ttl: settings.refresh_token_ttl,
                code_ttl: settings.code_ttl,
                throttle: settings.throttle,
                audit: crate::audit::Audit::start(&settings.audit_log)?,
                limits: settings.limits.clone(),
            },
        );
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
        })
    }
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

/// A started server. Await (or spawn) `server` to run it; `server.handle()` stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub store: Store,
}

/// Starts Tessera. Must be called inside an actix `System`.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let listener = std::net::TcpListener::bind(&settings.bind).map_err(|source| StartError::Bind {
        bind: settings.bind.clone(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        bind: settings.bind.clone(),
        source,
    })?;
    let issuer: Arc<str> = settings
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{addr}").into());
    let Engine {
        store,
        key,
        authority,
        ops,
    } = Engine::open(&settings, Arc::clone(&issuer)).await?;

    let admin_token = random_string("tsadm_", 32);
    let state = web::Data::new(AppState {
        authority,
        ops,
        admin_digest: key.admin_digest(&admin_token),
        session_ttl: settings.session_ttl.as_secs(),
    });
    let limits = http::InputLimits::from_settings(&settings);

    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(http::bound_head))
            .wrap(middleware::from_fn(http::observe))
            .configure(http::configure(state.clone(), limits))
    })
    .workers(settings.workers)
    // Slow clients (http::extract has the body's deadline): a head must arrive in time, a
    // closing connection may linger a second, and each worker holds a bounded number.
    .client_request_timeout(settings.request_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .max_connections(settings.max_connections)
    .backlog(2048)
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(|source| StartError::Bind {
        bind: settings.bind.clone(),
        source,
    })?;

    datadir::write_admin(
        &settings.data_dir,
        &AdminFile {
            url: format!("http://{addr}"),
            token: admin_token,
        },
    )?;
    tracing::info!(%addr, issuer = %issuer, shards = settings.shards, shard_threads = settings.shard_threads, workers = settings.workers, "tessera listening");
    Ok(Running {
        addr,
        server: server.run(),
        store,
    })
}
