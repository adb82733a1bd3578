//! Configuration in two steps: a raw layer (TOML file, then `TESSERA_*` environment overrides,
//! then built-in defaults) that only deserialises, and validated [`Settings`] that the rest of
//! the program receives explicitly. Nothing reads configuration from a global.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::oauth::GrantType;

pub const DEFAULT_BIND: &str = "127.0.0.1:4000";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_ACCESS_TOKEN_TTL_SECS: u64 = 3600;
pub const DEFAULT_REFRESH_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;
pub const DEFAULT_SESSION_TTL_SECS: u64 = 8 * 3600;
/// Ten minutes, the longest lifetime RFC 6749 §4.1.2 recommends for a code.
pub const DEFAULT_CODE_TTL_SECS: u64 = 600;
/// A configured client secret shorter than this draws a warning at start (see
/// [`Settings::warnings`]).
pub const MIN_CLIENT_SECRET_CHARS: usize = 32;
/// See `store::durability` ("Commit delay") and BENCHMARKS.md for how it was chosen.
pub const DEFAULT_COMMIT_DELAY_US: u64 = 250;

/// The file format, field for field. Every field is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuer: Option<String>,
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Where state is kept: `sled` (the default, embedded in `data_dir`) or `postgres` (at
    /// `database_url`). Keys, the server key and the audit log stay in `data_dir` either way.
    pub store: Option<String>,
    /// The PostgreSQL database for `store = "postgres"`, as a `postgres://` URL or libpq
    /// key=value string. Setting it alone selects `postgres`.
    pub database_url: Option<String>,
    /// Token shards; defaults to the number of cores.
    pub shards: Option<usize>,
    /// Threads the shards run on (shard `k` on thread `k % shard_threads`); defaults to half
    /// the cores, at least one, at most `shards`.
    pub shard_threads: Option<usize>,
    /// HTTP worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    pub access_token_ttl_secs: Option<u64>,
    /// Refresh token lifetime; 0 means refresh tokens never expire.
    pub refresh_token_ttl_secs: Option<u64>,
    /// How long a sign-in lasts in the browser before the password is asked again.
    pub session_ttl_secs: Option<u64>,
    /// Lifetime of an authorization code.
    pub code_ttl_secs: Option<u64>,
    /// Algorithm of a newly created ID-token signing key: `RS256` (default) or `ES256`.
    pub id_token_alg: Option<String>,
    /// Failed sign-ins after which a username is locked, and for how long.
    pub login_lockout_after: Option<u32>,
    pub login_lockout_secs: Option<u64>,
    pub sweep_interval_secs: Option<u64>,
    /// Pause of the group-commit flusher after a flush that covered many writers, in µs.
    pub commit_delay_us: Option<u64>,
    /// On a database shared by several nodes: how often a node reads the others' changes, in ms.
    pub cluster_poll_ms: Option<u64>,
    /// On a database shared by several nodes: how long a node may go without reading the
    /// change log before it stops answering from memory (503), in ms.
    pub cluster_stale_ms: Option<u64>,
    /// sled page cache, in MiB. Reads are answered from memory, so sled caches only the pages
    /// that writes touch; a large cache mostly holds pages read once at start.
    pub cache_mib: Option<u64>,
    /// File holding the server key (at least 32 bytes); default `<data_dir>/server.key`.
    pub server_key_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Where the audit log goes: a file (default `<data_dir>/audit.log`), or `-` for stdout.
    pub audit_log: Option<String>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Failed client authentications allowed back to back per client and address, and per
    /// minute after that.
    pub client_auth_failure_burst: Option<u32>,
    pub client_auth_failures_per_min: Option<u32>,
    /// Requests per second per address to authorize, login and userinfo (0: no limit), and
    /// the burst allowed before that rate applies.
    pub address_rate_per_sec: Option<u32>,
    pub address_rate_burst: Option<u32>,
    /// Longest accepted query string, in bytes.
    pub max_query_bytes: Option<usize>,
    /// Time a client has to send a request head, and a body once the handler reads it, in ms.
    pub request_timeout_ms: Option<u64>,
    /// Open connections per HTTP worker; past it, new connections wait in the backlog.
    pub max_connections: Option<usize>,
    /// The revocation feed's heartbeat on an idle stream, in ms.
    pub feed_heartbeat_ms: Option<u64>,
    /// Most revocations the change log keeps; past it the oldest go, even unexpired, and a
    /// subscriber behind them is told to start afresh.
    pub feed_log_max_events: Option<u64>,
    /// The cache hints of an active introspection answer, in seconds: how long a resource
    /// server may keep it without the feed, and with the feed connected (never past `exp`).
    pub introspection_cache_secs: Option<u64>,
    pub introspection_cache_with_feed_secs: Option<u64>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// Only from `TESSERA_SERVER_KEY` (base64): a key never belongs in a config file.
    #[serde(skip)]
    pub server_key: Option<String>,
    /// Where the admin API listens (TCP `host:port`); default the Unix socket
    /// `<data_dir>/admin.sock`.
    pub admin_bind: Option<String>,
    /// Where `/metrics` is served (TCP `host:port`); default the public listener.
    pub metrics_bind: Option<String>,
    /// PEM certificate chain and private key: with both, the public listener speaks https.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Default: true for a client with no grant types (a resource server), false otherwise.
    pub introspect: Option<bool>,
    /// RFC 8707 resource indicator of a resource server.
    pub resource: Option<String>,
    /// Requests per second to token, introspection and revocation; 0 or absent: no limit.
    #[serde(default)]
    pub rate_limit_per_sec: u32,
    /// `offline_access` (default): refresh tokens only when that scope is granted; `always`.
    #[serde(default)]
    pub refresh_tokens: crate::vocab::RefreshPolicy,
}

/// A `[[users]]` entry: created, or updated (password, email, name) at every start.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name} is invalid: {reason}")]
    Env { name: &'static str, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies `TESSERA_*` overrides from `env` (a lookup function, so tests need not touch the
    /// process environment).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, ConfigError> {
            env(name)
                .map(|v| {
                    v.trim().parse::<T>().map_err(|_| ConfigError::Env {
                        name,
                        reason: format!("not a number: {v:?}"),
                    })
                })
                .transpose()
        }
        if let Some(v) = env("TESSERA_ISSUER") {
            self.issuer = Some(v);
        }
        if let Some(v) = env("TESSERA_BIND") {
            self.bind = Some(v);
        }
        if let Some(v) = env("TESSERA_DATA_DIR") {
            self.data_dir = Some(v.into());
        }
        if let Some(v) = env("TESSERA_STORE") {
            self.store = Some(v);
        }
        if let Some(v) = env("TESSERA_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = env("TESSERA_SERVER_KEY") {
            self.server_key = Some(v);
        }
        if let Some(v) = env("TESSERA_AUDIT_LOG") {
            self.audit_log = Some(v);
        }
        if let Some(v) = env("TESSERA_SERVER_KEY_FILE") {
            self.server_key_file = Some(v.into());
        }
        if let Some(v) = num(&env, "TESSERA_SHARDS")? {
            self.shards = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_SHARD_THREADS")? {
            self.shard_threads = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_WORKERS")? {
            self.workers = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_ACCESS_TOKEN_TTL_SECS")? {
            self.access_token_ttl_secs = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_REFRESH_TOKEN_TTL_SECS")? {
            self.refresh_token_ttl_secs = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_SESSION_TTL_SECS")? {
            self.session_ttl_secs = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_CODE_TTL_SECS")? {
            self.code_ttl_secs = Some(v);
        }
        if let Some(v) = env("TESSERA_ID_TOKEN_ALG") {
            self.id_token_alg = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_SWEEP_INTERVAL_SECS")? {
            self.sweep_interval_secs = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_COMMIT_DELAY_US")? {
            self.commit_delay_us = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_CLUSTER_POLL_MS")? {
            self.cluster_poll_ms = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_CLUSTER_STALE_MS")? {
            self.cluster_stale_ms = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_CACHE_MIB")? {
            self.cache_mib = Some(v);
        }
        if let Some(v) = env("TESSERA_TRUSTED_PROXIES") {
            self.trusted_proxies = Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(Into::into)
                    .collect(),
            );
        }
        if let Some(v) = num(&env, "TESSERA_ADDRESS_RATE_PER_SEC")? {
            self.address_rate_per_sec = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_MAX_BODY_BYTES")? {
            self.max_body_bytes = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_MAX_QUERY_BYTES")? {
            self.max_query_bytes = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_REQUEST_TIMEOUT_MS")? {
            self.request_timeout_ms = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_MAX_CONNECTIONS")? {
            self.max_connections = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_FEED_HEARTBEAT_MS")? {
            self.feed_heartbeat_ms = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_FEED_LOG_MAX_EVENTS")? {
            self.feed_log_max_events = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_INTROSPECTION_CACHE_SECS")? {
            self.introspection_cache_secs = Some(v);
        }
        if let Some(v) = num(&env, "TESSERA_INTROSPECTION_CACHE_WITH_FEED_SECS")? {
            self.introspection_cache_with_feed_secs = Some(v);
        }
        self.apply_listener_env(&env);
        Ok(())
    }

    fn apply_listener_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = env("TESSERA_ADMIN_BIND") {
            self.admin_bind = Some(v);
        }
        if let Some(v) = env("TESSERA_METRICS_BIND") {
            self.metrics_bind = Some(v);
        }
        if let Some(v) = env("TESSERA_TLS_CERT") {
            self.tls_cert = Some(v.into());
        }
        if let Some(v) = env("TESSERA_TLS_KEY") {
            self.tls_key = Some(v.into());
        }
    }

    /// The admin, metrics and TLS settings.
    fn listeners(&mut self) -> Result<Listeners, ConfigError> {
        let tls = match (self.tls_cert.take(), self.tls_key.take()) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key go together: set both or neither".into(),
                ))
            }
        };
        Ok(Listeners {
            admin_bind: self.admin_bind.take().filter(|b| !b.trim().is_empty()),
            metrics_bind: self.metrics_bind.take().filter(|b| !b.trim().is_empty()),
            tls,
        })
    }

    /// Validates into [`Settings`], filling defaults.
    pub fn validate(mut self) -> Result<Settings, ConfigError> {
        let listeners = self.listeners()?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let limits = self.limits()?;
        let feed = self.feed()?;
        let bind = self.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let issuer = self.issuer.map(|i| i.trim_end_matches('/').to_owned());
        if let Some(issuer) = &issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) || issuer.contains(['?', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "issuer {issuer:?} must be an http(s) URL without query or fragment"
                )));
            }
        }
        let shards = self.shards.unwrap_or(cores);
        if !(1..=256).contains(&shards) {
            return Err(ConfigError::Invalid(format!(
                "shards must be between 1 and 256, got {shards}"
            )));
        }
        // The HTTP workers already take one thread per core, and a shard thread spends most of
        // its time waking for a message: fewer shard threads each wake less often and serve
        // more messages per wake-up (BENCHMARKS.md, "Shard threads").
        let shard_threads = self.shard_threads.unwrap_or((cores / 2).clamp(1, shards));
        if !(1..=shards).contains(&shard_threads) {
            return Err(ConfigError::Invalid(format!(
                "shard_threads must be between 1 and shards ({shards}), got {shard_threads}"
            )));
        }
        let workers = self.workers.unwrap_or(cores);
        if !(1..=256).contains(&workers) {
            return Err(ConfigError::Invalid(format!(
                "workers must be between 1 and 256, got {workers}"
            )));
        }
        let ttl = self.access_token_ttl_secs.unwrap_or(DEFAULT_ACCESS_TOKEN_TTL_SECS);
        if ttl == 0 {
            return Err(ConfigError::Invalid("access_token_ttl_secs must be positive".into()));
        }
        let commit_delay_us = self.commit_delay_us.unwrap_or(DEFAULT_COMMIT_DELAY_US);
        if commit_delay_us > 100_000 {
            return Err(ConfigError::Invalid(format!(
                "commit_delay_us must be at most 100000 (100 ms), got {commit_delay_us}"
            )));
        }
        let cluster = ClusterSettings::validate(self.cluster_poll_ms, self.cluster_stale_ms)?;
        let mut clients = Vec::with_capacity(self.clients.len());
        for c in self.clients {
            if c.client_id.is_empty() || c.client_secret.is_empty() {
                return Err(ConfigError::Invalid(
                    "every [[clients]] entry needs a client_id and a client_secret".into(),
                ));
            }
            if clients.iter().any(|o: &RawClient| o.client_id == c.client_id) {
                return Err(ConfigError::Invalid(format!(
                    "client {:?} is listed twice",
                    c.client_id
                )));
            }
            clients.push(c);
        }
        let mut users: Vec<RawUser> = Vec::with_capacity(self.users.len());
        for u in self.users {
            if users.iter().any(|o| o.username == u.username) {
                return Err(ConfigError::Invalid(format!("user {:?} is listed twice", u.username)));
            }
            users.push(u);
        }
        let id_token_alg = match self.id_token_alg.as_deref() {
            None => crate::signing::Algorithm::RS256,
            Some(a) => a
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("id_token_alg must be RS256 or ES256, got {a:?}")))?,
        };
        let session_ttl = self.session_ttl_secs.unwrap_or(DEFAULT_SESSION_TTL_SECS);
        if session_ttl == 0 {
            return Err(ConfigError::Invalid("session_ttl_secs must be positive".into()));
        }
        let code_ttl = self.code_ttl_secs.unwrap_or(DEFAULT_CODE_TTL_SECS);
        if code_ttl == 0 {
            return Err(ConfigError::Invalid("code_ttl_secs must be positive".into()));
        }
        let mut throttle = crate::authority::ThrottlePolicy::default();
        if let Some(n) = self.login_lockout_after {
            if n == 0 {
                return Err(ConfigError::Invalid("login_lockout_after must be positive".into()));
            }
            throttle.lockout_after = n;
            throttle.free_failures = throttle.free_failures.min(n - 1);
        }
        if let Some(secs) = self.login_lockout_secs {
            throttle.lockout_secs = secs;
        }
        let bounds = InputBounds::validate(
            self.max_body_bytes,
            self.max_query_bytes,
            self.request_timeout_ms,
            self.max_connections,
        )?;
        let refresh_ttl = self.refresh_token_ttl_secs.unwrap_or(DEFAULT_REFRESH_TOKEN_TTL_SECS);
        let data_dir = self.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let store = StoreChoice::validate(self.store.as_deref(), self.database_url)?;
        let audit_log = match self.audit_log.as_deref() {
            Some("") => return Err(ConfigError::Invalid("audit_log must be a path, - or off".into())),
            Some(v) => crate::audit::AuditTarget::parse(v),
            None => crate::audit::AuditTarget::File(data_dir.join("audit.log")),
        };
        Ok(Settings {
            config_file: None,
            audit_log,
            issuer: issuer.map(Into::into),
            bind,
            server_key_file: self.server_key_file.unwrap_or_else(|| data_dir.join("server.key")),
            server_key: self.server_key,
            data_dir,
            store,
            shards,
            shard_threads,
            workers,
            access_token_ttl: Duration::from_secs(ttl),
            refresh_token_ttl: (refresh_ttl > 0).then(|| Duration::from_secs(refresh_ttl)),
            session_ttl: Duration::from_secs(session_ttl),
            code_ttl: Duration::from_secs(code_ttl),
            id_token_alg,
            throttle,
            users,
            sweep_interval: Duration::from_secs(self.sweep_interval_secs.unwrap_or(30).max(1)),
            commit_delay: Duration::from_micros(commit_delay_us),
            cluster,
            cache_bytes: self.cache_mib.unwrap_or(32) * 1024 * 1024,
            max_body_bytes: bounds.max_body_bytes,
            max_query_bytes: bounds.max_query_bytes,
            request_timeout: bounds.request_timeout,
            max_connections: bounds.max_connections,
            clients,
            limits,
            listeners,
            feed,
        })
    }

    /// The revocation feed's settings, defaults filled.
    fn feed(&self) -> Result<FeedSettings, ConfigError> {
        let heartbeat_ms = self.feed_heartbeat_ms.unwrap_or(DEFAULT_FEED_HEARTBEAT_MS);
        if !(10..=60_000).contains(&heartbeat_ms) {
            return Err(ConfigError::Invalid(format!(
                "feed_heartbeat_ms must be between 10 and 60000, got {heartbeat_ms}"
            )));
        }
        let log_max_events = self.feed_log_max_events.unwrap_or(crate::store::DEFAULT_LOG_CAPACITY);
        if log_max_events == 0 {
            return Err(ConfigError::Invalid("feed_log_max_events must be positive".into()));
        }
        let hint = crate::authority::CacheHint {
            without_feed: self
                .introspection_cache_secs
                .unwrap_or(DEFAULT_INTROSPECTION_CACHE_SECS),
            with_feed: self
                .introspection_cache_with_feed_secs
                .unwrap_or(DEFAULT_INTROSPECTION_CACHE_WITH_FEED_SECS),
        };
        Ok(FeedSettings {
            heartbeat: Duration::from_millis(heartbeat_ms),
            log_max_events,
            cache_hint: hint,
        })
    }

    /// The rate limits and trusted proxies, defaults filled.
    fn limits(&self) -> Result<crate::limits::LimitPolicy, ConfigError> {
        let mut limits = crate::limits::LimitPolicy::default();
        if let Some(entries) = &self.trusted_proxies {
            limits.trusted_proxies = crate::limits::TrustedProxies::parse(entries).map_err(ConfigError::Invalid)?;
        }
        let positive = |v: Option<u32>, name: &str, default: u32| match v {
            Some(0) => Err(ConfigError::Invalid(format!("{name} must be positive"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        limits.auth_failure_burst = positive(
            self.client_auth_failure_burst,
            "client_auth_failure_burst",
            limits.auth_failure_burst,
        )?;
        limits.auth_failures_per_min = positive(
            self.client_auth_failures_per_min,
            "client_auth_failures_per_min",
            limits.auth_failures_per_min,
        )?;
        limits.address_rate_per_sec = self.address_rate_per_sec.unwrap_or(limits.address_rate_per_sec);
        limits.address_burst = positive(self.address_rate_burst, "address_rate_burst", limits.address_burst)?;
        Ok(limits)
    }
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_QUERY_BYTES: usize = 8 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// actix-web's own default, per worker.
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;

/// The validated bounds on what one request may send and how long it may take.
struct InputBounds {
    max_body_bytes: usize,
    max_query_bytes: usize,
    request_timeout: Duration,
    max_connections: usize,
}

impl InputBounds {
    fn validate(
        body: Option<usize>,
        query: Option<usize>,
        timeout_ms: Option<u64>,
        connections: Option<usize>,
    ) -> Result<Self, ConfigError> {
        let in_range = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{name} must be between {lo} and {hi}, got {v}"
                )))
            }
        };
        let max_body_bytes = body.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        in_range("max_body_bytes", max_body_bytes as u64, 1024, 16 << 20)?;
        // The login form sends the browser back to /oauth/authorize with the whole request in
        // the query, so the bound must leave room for it; above 64 KiB actix-http refuses the
        // request target anyway (the `http` crate's longest URI).
        let max_query_bytes = query.unwrap_or(DEFAULT_MAX_QUERY_BYTES);
        in_range("max_query_bytes", max_query_bytes as u64, 1024, 64 * 1024)?;
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
        in_range("request_timeout_ms", timeout_ms, 1, 600_000)?;
        let max_connections = connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        in_range("max_connections", max_connections as u64, 1, 1_000_000)?;
        Ok(InputBounds {
            max_body_bytes,
            max_query_bytes,
            request_timeout: Duration::from_millis(timeout_ms),
            max_connections,
        })
    }
}

pub const DEFAULT_FEED_HEARTBEAT_MS: u64 = 1000;
/// What a resource server without the feed caches today (tessera-api's `--cache-ttl-ms`).
pub const DEFAULT_INTROSPECTION_CACHE_SECS: u64 = 5;
/// What a subscriber may keep: revocations reach it through the feed.
pub const DEFAULT_INTROSPECTION_CACHE_WITH_FEED_SECS: u64 = 300;

/// The revocation feed and the cache hints of introspection.
#[derive(Clone, Debug)]
pub struct FeedSettings {
    pub heartbeat: Duration,
    pub log_max_events: u64,
    pub cache_hint: crate::authority::CacheHint,
}

/// Validated settings.
#[derive(Clone)]
pub struct Settings {
    /// The file these settings were read from, if any: it owns its clients and users.
    pub config_file: Option<PathBuf>,
    /// The configured issuer; when absent, `http://<bound address>` once bound.
    pub issuer: Option<Arc<str>>,
    pub bind: String,
    pub data_dir: PathBuf,
    pub store: StoreChoice,
    pub server_key_file: PathBuf,
    /// Base64 server key from the environment; overrides `server_key_file`.
    pub server_key: Option<String>,
    pub shards: usize,
    pub shard_threads: usize,
    pub workers: usize,
    pub access_token_ttl: Duration,
    /// `None`: refresh tokens never expire.
    pub refresh_token_ttl: Option<Duration>,
    pub session_ttl: Duration,
    pub code_ttl: Duration,
    pub id_token_alg: crate::signing::Algorithm,
    pub throttle: crate::authority::ThrottlePolicy,
    /// Users created or updated at start.
    pub users: Vec<RawUser>,
    pub sweep_interval: Duration,
    pub commit_delay: Duration,
    pub cluster: ClusterSettings,
    pub cache_bytes: u64,
    pub max_body_bytes: usize,
    pub audit_log: crate::audit::AuditTarget,
    pub max_query_bytes: usize,
    /// Deadline for a request head (`client_request_timeout`) and for a body once read.
    pub request_timeout: Duration,
    /// Per HTTP worker.
    pub max_connections: usize,
    /// Clients created or updated at start.
    pub clients: Vec<RawClient>,
    /// Rate limits, quotas and trusted proxies.
    pub limits: crate::limits::LimitPolicy,
    pub listeners: Listeners,
    pub feed: FeedSettings,
}

/// How a node keeps up with the other nodes of a shared database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Between two reads of the change log (`cluster_poll_ms`, 20 ms).
    pub poll_interval: Duration,
    /// Without a successful read for this long, the node cannot vouch for its memory
    /// (`cluster_stale_ms`, 1000 ms).
    pub stale_after: Duration,
}

impl ClusterSettings {
    fn validate(poll_ms: Option<u64>, stale_ms: Option<u64>) -> Result<Self, ConfigError> {
        let poll = poll_ms.unwrap_or(20);
        let stale = stale_ms.unwrap_or(1000);
        if !(1..=10_000).contains(&poll) {
            return Err(ConfigError::Invalid(format!(
                "cluster_poll_ms must be between 1 and 10000, got {poll}"
            )));
        }
        if stale < 2 * poll {
            return Err(ConfigError::Invalid(format!(
                "cluster_stale_ms must be at least twice cluster_poll_ms ({poll}), got {stale}"
            )));
        }
        Ok(Self {
            poll_interval: Duration::from_millis(poll),
            stale_after: Duration::from_millis(stale),
        })
    }
}

/// Which backend keeps the state.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// sled in `<data_dir>/db`.
    Sled,
    /// PostgreSQL at this URL.
    Postgres(String),
}

impl StoreChoice {
    fn validate(store: Option<&str>, url: Option<String>) -> Result<StoreChoice, ConfigError> {
        match (store, url) {
            (None | Some("sled"), None) => Ok(StoreChoice::Sled),
            (None | Some("postgres"), Some(url)) if !url.trim().is_empty() => Ok(StoreChoice::Postgres(url)),
            (Some("postgres"), _) => Err(ConfigError::Invalid(
                "store = \"postgres\" needs database_url (or TESSERA_DATABASE_URL)".into(),
            )),
            (Some("sled"), Some(_)) => Err(ConfigError::Invalid(
                "database_url is set, but store is \"sled\": remove one of them".into(),
            )),
            (None, Some(_)) => Err(ConfigError::Invalid("database_url is empty".into())),
            (Some(other), _) => Err(ConfigError::Invalid(format!(
                "store is \"sled\" or \"postgres\", not {other:?}"
            ))),
        }
    }
}

impl std::fmt::Debug for StoreChoice {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sled => f.write_str("sled"),
            StoreChoice::Postgres(_) => f.write_str("postgres(<url redacted>)"),
        }
    }
}

/// Where the admin API and the metrics are served, and the public listener's TLS files.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    /// `None`: the Unix socket `<data_dir>/admin.sock`.
    pub admin_bind: Option<String>,
    /// `None`: `/metrics` stays on the public listener.
    pub metrics_bind: Option<String>,
    pub tls: Option<TlsFiles>,
}

/// PEM files for https on the public listener.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl std::fmt::Debug for Settings {
    // Spelled out so that the server key and client secrets can never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("issuer", &self.issuer)
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("shards", &self.shards)
            .field("shard_threads", &self.shard_threads)
            .field("workers", &self.workers)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("code_ttl", &self.code_ttl)
            .field("commit_delay", &self.commit_delay)
            .field("listeners", &self.listeners)
            .field(
                "clients",
                &self.clients.iter().map(|c| &c.client_id).collect::<Vec<_>>(),
            )
            .field("users", &self.users.iter().map(|u| &u.username).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// What is allowed but unwise in these settings, one sentence each, for the log at start:
    /// client secrets shorter than [`MIN_CLIENT_SECRET_CHARS`] (a secret is only HMAC-digested,
    /// so its strength is its length and randomness). Names the client, never the secret.
    pub fn warnings(&self) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.client_secret.chars().count() < MIN_CLIENT_SECRET_CHARS)
            .map(|c| {
                format!(
                    "client {:?} has a client secret shorter than {MIN_CLIENT_SECRET_CHARS} characters; \
                     use a long random one (`tessera client add` makes one)",
                    c.client_id
                )
            })
            .collect()
    }

    /// Loads the file (if any), applies the process environment, validates.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut raw = match config_file {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        raw.apply_env(|name| std::env::var(name).ok())?;
        let mut settings = raw.validate()?;
        settings.config_file = config_file.map(Path::to_path_buf);
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo configuration shipped at the repository root, in the shape outside checks rely on.
    const SAMPLE: &str = include_str!("../tessera.toml");

    #[test]
    fn the_documented_file_shape_parses() {
        let s = RawConfig::from_toml(SAMPLE).unwrap().validate().unwrap();
        assert_eq!(s.issuer.as_deref(), Some("http://127.0.0.1:4000"));
        assert_eq!(s.clients.len(), 2);
        assert_eq!(s.clients[0].grant_types.len(), 3);
        assert!(s.clients[1].grant_types.is_empty());
        assert_eq!(s.access_token_ttl, Duration::from_secs(3600));
        assert_eq!(s.server_key_file, PathBuf::from("./data/server.key"));
        assert_eq!(
            s.audit_log,
            crate::audit::AuditTarget::File("./data/audit.log".into()),
            "the audit log defaults to the data directory"
        );
        assert_eq!(s.users.len(), 1);
        assert_eq!(s.users[0].username, "alice");
        assert_eq!(s.users[0].email.as_deref(), Some("alice@example.com"));
        assert_eq!(s.clients[0].post_logout_redirect_uris, ["http://127.0.0.1:3001/"]);
        assert_eq!(
            s.refresh_token_ttl,
            Some(Duration::from_secs(DEFAULT_REFRESH_TOKEN_TTL_SECS))
        );
        assert_eq!(s.id_token_alg, crate::signing::Algorithm::RS256);
    }

    #[test]
    fn input_bounds_default_read_from_env_and_validate() {
        let s = RawConfig::default().validate().unwrap();
        assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(s.max_query_bytes, DEFAULT_MAX_QUERY_BYTES);
        assert_eq!(s.request_timeout, Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS));
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
        let mut raw = RawConfig::default();
        raw.apply_env(|k| match k {
            "TESSERA_MAX_BODY_BYTES" => Some("4096".into()),
            "TESSERA_MAX_QUERY_BYTES" => Some("2048".into()),
            "TESSERA_REQUEST_TIMEOUT_MS" => Some("250".into()),
            "TESSERA_MAX_CONNECTIONS" => Some("100".into()),
            _ => None,
        })
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(
            (
                s.max_body_bytes,
                s.max_query_bytes,
                s.request_timeout,
                s.max_connections
            ),
            (4096, 2048, Duration::from_millis(250), 100)
        );
        for bad in [
            "max_body_bytes = 10",
            "max_query_bytes = 1000000",
            "request_timeout_ms = 0",
            "max_connections = 0",
        ] {
            assert!(RawConfig::from_toml(bad).unwrap().validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_tokens_without_expiry_and_es256_keys() {
        let mut raw = RawConfig::default();
        raw.apply_env(|k| match k {
            "TESSERA_REFRESH_TOKEN_TTL_SECS" => Some("0".into()),
            "TESSERA_ID_TOKEN_ALG" => Some("ES256".into()),
            _ => None,
        })
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.refresh_token_ttl, None, "0 means no expiry, as in the seed");
        assert_eq!(s.id_token_alg, crate::signing::Algorithm::ES256);
        assert!(RawConfig {
            id_token_alg: Some("HS256".into()),
            ..Default::default()
        }
        .validate()
        .is_err());
        let dup = "[[users]]\nusername='a'\npassword='p'\n[[users]]\nusername='a'\npassword='q'";
        assert!(RawConfig::from_toml(dup).unwrap().validate().is_err());
    }

    #[test]
    fn code_lifetime_is_a_setting() {
        assert_eq!(
            RawConfig::default().validate().unwrap().code_ttl,
            Duration::from_secs(DEFAULT_CODE_TTL_SECS)
        );
        let mut raw = RawConfig::from_toml("code_ttl_secs = 30").unwrap();
        assert_eq!(raw.validate().unwrap().code_ttl, Duration::from_secs(30));
        raw = RawConfig::default();
        raw.apply_env(|k| (k == "TESSERA_CODE_TTL_SECS").then(|| "45".into()))
            .unwrap();
        assert_eq!(raw.validate().unwrap().code_ttl, Duration::from_secs(45));
        let zero = RawConfig::from_toml("code_ttl_secs = 0").unwrap().validate();
        assert!(zero.is_err_and(|e| e.to_string().contains("code_ttl_secs")));
    }

    #[test]
    fn short_client_secrets_draw_a_warning_that_names_no_secret() {
        let long = "x".repeat(MIN_CLIENT_SECRET_CHARS);
        let toml = format!(
            "[[clients]]\nclient_id='weak'\nclient_secret='s3cr3t'\n\
             [[clients]]\nclient_id='strong'\nclient_secret='{long}'"
        );
        let warnings = RawConfig::from_toml(&toml).unwrap().validate().unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"weak\""), "{warnings:?}");
        assert!(!warnings[0].contains("s3cr3t"), "{warnings:?}");
    }

    #[test]
    fn debug_of_the_settings_shows_no_secret() {
        let toml = "[[clients]]\nclient_id='c'\nclient_secret='s3cr3t'\n\
                    [[users]]\nusername='alice'\npassword='p4ssw0rd'";
        let mut raw = RawConfig::from_toml(toml).unwrap();
        raw.apply_env(|k| (k == "TESSERA_SERVER_KEY").then(|| "a2V5LWtleS1rZXk".into()))
            .unwrap();
        let shown = format!("{:?}", raw.validate().unwrap());
        for secret in ["s3cr3t", "p4ssw0rd", "a2V5LWtleS1rZXk"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn limits_and_trusted_proxies() {
        let s = RawConfig::default().validate().unwrap();
        assert_eq!(s.limits, crate::limits::LimitPolicy::default());
        let mut raw = RawConfig::from_toml(
            "trusted_proxies = ['10.0.0.0/8', '::1']\naddress_rate_per_sec = 5\nclient_auth_failure_burst = 3",
        )
        .unwrap();
        raw.apply_env(|k| (k == "TESSERA_ADDRESS_RATE_PER_SEC").then(|| "0".into()))
            .unwrap();
        let s = raw.validate().unwrap();
        assert!(s.limits.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        assert!(!s.limits.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
        assert_eq!(s.limits.address_rate_per_sec, 0, "the environment turns it off");
        assert_eq!(s.limits.auth_failure_burst, 3);
        let mut raw = RawConfig::default();
        raw.apply_env(|k| (k == "TESSERA_TRUSTED_PROXIES").then(|| "127.0.0.1, 10.0.0.0/8".into()))
            .unwrap();
        assert!(raw
            .validate()
            .unwrap()
            .limits
            .trusted_proxies
            .contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn defaults_without_a_file() {
        let s = RawConfig::default().validate().unwrap();
        assert_eq!(s.bind, DEFAULT_BIND);
        assert_eq!(s.issuer, None, "derived from the bound address at start");
        assert!(s.shards >= 1);
        assert!((1..=s.shards).contains(&s.shard_threads));
        assert_eq!(s.commit_delay, Duration::from_micros(DEFAULT_COMMIT_DELAY_US));
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut raw = RawConfig::from_toml(SAMPLE).unwrap();
        raw.apply_env(|k| match k {
            "TESSERA_BIND" => Some("127.0.0.1:9999".into()),
            "TESSERA_ISSUER" => Some("https://auth.example/".into()),
            "TESSERA_SHARDS" => Some("3".into()),
            "TESSERA_SHARD_THREADS" => Some("2".into()),
            "TESSERA_COMMIT_DELAY_US" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.commit_delay, Duration::ZERO, "zero turns the pause off");
        assert_eq!(s.bind, "127.0.0.1:9999");
        assert_eq!(s.issuer.as_deref(), Some("https://auth.example"));
        assert_eq!(s.shards, 3);
        assert_eq!(s.shard_threads, 2);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let mut raw = RawConfig::default();
        let err = raw
            .apply_env(|k| (k == "TESSERA_SHARDS").then(|| "many".into()))
            .unwrap_err();
        assert!(err.to_string().contains("TESSERA_SHARDS"));
        assert!(RawConfig {
            shards: Some(0),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RawConfig {
            shards: Some(2),
            shard_threads: Some(3),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RawConfig {
            commit_delay_us: Some(100_001),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RawConfig {
            cluster_poll_ms: Some(0),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(
            RawConfig {
                cluster_poll_ms: Some(50),
                cluster_stale_ms: Some(99),
                ..Default::default()
            }
            .validate()
            .is_err(),
            "a node must get two polls in before it counts as stale"
        );
        let cluster = RawConfig {
            cluster_poll_ms: Some(5),
            cluster_stale_ms: Some(300),
            ..Default::default()
        }
        .validate()
        .unwrap()
        .cluster;
        assert_eq!(
            (cluster.poll_interval, cluster.stale_after),
            (Duration::from_millis(5), Duration::from_millis(300))
        );
        assert!(RawConfig {
            issuer: Some("ftp://x".into()),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RawConfig::from_toml("unknown_key = 1").is_err());
        assert!(RawConfig::from_toml("trusted_proxies = ['10.0.0.0/40']")
            .unwrap()
            .validate()
            .is_err());
        assert!(RawConfig::from_toml("client_auth_failure_burst = 0")
            .unwrap()
            .validate()
            .is_err());
        assert!(
            RawConfig::from_toml("[[clients]]\nclient_id='a'\nclient_secret='b'\ngrant_types=['password']").is_err()
        );
        let dup = "[[clients]]\nclient_id='a'\nclient_secret='b'\n[[clients]]\nclient_id='a'\nclient_secret='c'";
        assert!(RawConfig::from_toml(dup).unwrap().validate().is_err());
    }

    #[test]
    fn listeners_default_to_the_socket_and_the_public_metrics() {
        let s = RawConfig::default().validate().unwrap();
        assert!(s.listeners.admin_bind.is_none() && s.listeners.metrics_bind.is_none());
        assert!(s.listeners.tls.is_none());
        let mut raw =
            RawConfig::from_toml("admin_bind = \"127.0.0.1:4001\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"").unwrap();
        raw.apply_env(|k| (k == "TESSERA_METRICS_BIND").then(|| "127.0.0.1:9100".into()))
            .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.listeners.admin_bind.as_deref(), Some("127.0.0.1:4001"));
        assert_eq!(s.listeners.metrics_bind.as_deref(), Some("127.0.0.1:9100"));
        let tls = s.listeners.tls.unwrap();
        assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some("c.pem"), Some("k.pem")));
        let half = RawConfig::from_toml("tls_cert = \"c.pem\"").unwrap().validate();
        assert!(half.is_err(), "a certificate without its key is refused");
    }
}
