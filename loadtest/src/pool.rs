//! What the campaigns need before the clock starts: resource-server clients to introspect as,
//! a pool of tokens (live, revoked, and never issued) to introspect, and user accounts to sign
//! in as.
//!
//! Everything here goes through Tessera's public HTTP surface, so the campaigns run against any
//! running Tessera: the token endpoint issues the pool, the revocation endpoint revokes a share,
//! and the admin API (its address and credential from `<data_dir>/admin.json`: the Unix socket
//! in the data directory, or `admin_bind`) registers the resource servers and creates the
//! accounts.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use rand::Rng;
use serde::Deserialize;

/// Requests in flight while the pool is prepared.
const SETUP_CONCURRENCY: usize = 64;

/// Credentials of one client.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Client {
    /// `id:secret`, as the settings spell a client.
    pub fn parse(s: &str) -> Option<Self> {
        let (id, secret) = s.split_once(':')?;
        Some(Self {
            id: id.into(),
            secret: secret.into(),
        })
    }
}

/// Settings that goose's command line does not own, from `LOADTEST_*` variables:
///
/// - `LOADTEST_POOL` (100000): tokens issued before the clock starts, for introspection;
/// - `LOADTEST_REVOKED_PERCENT` (5), `LOADTEST_UNKNOWN_PERCENT` (5): shares of introspections
///   of revoked and of never-issued tokens;
/// - `LOADTEST_RESOURCE_SERVERS` (8): introspecting clients registered through the admin API;
/// - `LOADTEST_USERS` (64): accounts `loadtest-user-1..N` (password `loadtest-password`) that
///   the `code-flow` scenario signs in as, recreated through the admin API before the clock
///   starts; goose user `i` signs in as account `i mod N + 1`;
/// - `LOADTEST_DATA_DIR` (./data): where the running server's `admin.json` is;
/// - `LOADTEST_CLIENT` (demo-client:demo-secret): the client that issues tokens, and that the
///   `code-flow` scenario signs in to (it needs the `authorization_code`, `refresh_token` and
///   `client_credentials` grants, the scopes `openid profile read`, and the redirect URI
///   `http://127.0.0.1:3001/callback`);
/// - `LOADTEST_RESOURCE_SERVER` (api-server:api-secret): the resource server introspected as
///   when there is no admin credential.
#[derive(Debug)]
pub struct Settings {
    pub host: String,
    pub pool: usize,
    pub revoked_percent: u32,
    pub unknown_percent: u32,
    pub resource_servers: usize,
    /// Accounts the `code-flow` scenario signs in as.
    pub users: usize,
    pub data_dir: String,
    /// The client that issues tokens (needs the client_credentials grant and the `read` scope).
    pub issuer_client: Client,
    /// Used when no admin credential is at hand to register resource servers.
    pub fallback_resource_server: Client,
}

impl Settings {
    pub fn from_env(host: String) -> Result<Self, String> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) => v.parse().map_err(|_| format!("{name}={v:?} is not valid")),
                Err(_) => Ok(default),
            }
        }
        let client = |name: &str, default: &str| {
            let v = std::env::var(name).unwrap_or_else(|_| default.into());
            Client::parse(&v).ok_or_else(|| format!("{name} must be CLIENT_ID:SECRET"))
        };
        let s = Self {
            host: host.trim_end_matches('/').to_owned(),
            pool: var("LOADTEST_POOL", 100_000)?,
            revoked_percent: var("LOADTEST_REVOKED_PERCENT", 5)?,
            unknown_percent: var("LOADTEST_UNKNOWN_PERCENT", 5)?,
            resource_servers: var("LOADTEST_RESOURCE_SERVERS", 8)?,
            users: var("LOADTEST_USERS", 64)?,
            data_dir: var("LOADTEST_DATA_DIR", "./data".to_owned())?,
            issuer_client: client("LOADTEST_CLIENT", "demo-client:demo-secret")?,
            fallback_resource_server: client("LOADTEST_RESOURCE_SERVER", "api-server:api-secret")?,
        };
        if s.pool == 0 || s.revoked_percent + s.unknown_percent >= 100 || s.resource_servers == 0 || s.users == 0 {
            return Err(
                "LOADTEST_POOL, LOADTEST_RESOURCE_SERVERS and LOADTEST_USERS must be positive, and revoked plus unknown under 100%"
                    .into(),
            );
        }
        Ok(s)
    }
}

/// What introspecting a pool token must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Active,
    Inactive,
}

/// Tokens to introspect, and the clients to introspect them as.
pub struct Pool {
    pub live: Vec<String>,
    pub revoked: Vec<String>,
    pub unknown: Vec<String>,
    pub resource_servers: Vec<Client>,
    pub issuer_client: Client,
    revoked_percent: u32,
    unknown_percent: u32,
}

impl Pool {
    /// A token drawn at random: revoked and unknown ones in their configured shares.
    pub fn draw(&self, rng: &mut impl Rng) -> (&str, Expect) {
        let roll = rng.gen_range(0..100);
        let (list, expect) = if roll < self.revoked_percent && !self.revoked.is_empty() {
            (&self.revoked, Expect::Inactive)
        } else if roll < self.revoked_percent + self.unknown_percent && !self.unknown.is_empty() {
            (&self.unknown, Expect::Inactive)
        } else {
            (&self.live, Expect::Active)
        };
        (&list[rng.gen_range(0..list.len())], expect)
    }

    /// A pool with no tokens, for the issuance campaign.
    pub fn issuance_only(settings: &Settings) -> Self {
        Self {
            live: Vec::new(),
            revoked: Vec::new(),
            unknown: Vec::new(),
            resource_servers: vec![settings.fallback_resource_server.clone()],
            issuer_client: settings.issuer_client.clone(),
            revoked_percent: 0,
            unknown_percent: 0,
        }
    }

    /// Registers the resource servers and issues, then partly revokes, the pool.
    pub async fn prepare(settings: &Settings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(SETUP_CONCURRENCY)
            .build()
            .map_err(|e| e.to_string())?;
        let resource_servers = register_resource_servers(settings).await?;

        let started = Instant::now();
        let issuer = &settings.issuer_client;
        let mut tokens: Vec<String> = stream::iter(0..settings.pool)
            .map(|_| issue(&http, &settings.host, issuer))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        eprintln!(
            "issued {} pool tokens in {:.1} s",
            tokens.len(),
            started.elapsed().as_secs_f64()
        );

        let revoked_count = tokens.len() * settings.revoked_percent as usize / 100;
        let revoked: Vec<String> = tokens.split_off(tokens.len() - revoked_count);
        stream::iter(revoked.iter())
            .map(|t| revoke(&http, &settings.host, issuer, t))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let unknown_count = (settings.pool * settings.unknown_percent as usize / 100).max(1);
        let mut rng = rand::thread_rng();
        let unknown = (0..unknown_count)
            .map(|_| {
                let tail: String = (0..43)
                    .map(|_| {
                        let c = rng.gen_range(0..64u8);
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[c as usize] as char
                    })
                    .collect();
                format!("tsa_{tail}")
            })
            .collect();
        eprintln!(
            "pool ready: {} live, {} revoked, {} never issued; {} resource servers",
            tokens.len(),
            revoked.len(),
            unknown_count,
            resource_servers.len()
        );
        Ok(Self {
            live: tokens,
            revoked,
            unknown,
            resource_servers,
            issuer_client: issuer.clone(),
            revoked_percent: settings.revoked_percent,
            unknown_percent: settings.unknown_percent,
        })
    }
}

#[derive(Deserialize)]
struct AdminFile {
    /// `unix:<socket path>` or `http://host:port`.
    admin: String,
    token: String,
}

/// The running server's admin API: a client that reaches it, and the base URL to put in front
/// of `/admin/...` (over the socket the host only fills the Host header).
struct AdminApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminApi {
    fn new(file: AdminFile) -> Result<Self, String> {
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        let (builder, base) = match file.admin.strip_prefix("unix:") {
            Some(socket) => (builder.unix_socket(socket), "http://admin".to_owned()),
            None => (builder, file.admin.trim_end_matches('/').to_owned()),
        };
        Ok(AdminApi {
            http: builder.build().map_err(|e| e.to_string())?,
            base,
            token: file.token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }
}

/// The running server's admin URL and credential, from `<data_dir>/admin.json`; or, when it
/// cannot be read (another machine, another data dir), where it was looked for.
fn read_admin(settings: &Settings) -> Result<AdminApi, String> {
    let path = std::path::Path::new(&settings.data_dir).join("admin.json");
    match std::fs::read_to_string(&path).map(|s| serde_json::from_str(&s)) {
        Ok(Ok(admin)) => AdminApi::new(admin).map_err(|e| format!("{}: {e}", path.display())),
        _ => Err(path.display().to_string()),
    }
}

/// Registers `loadtest-rs-N` clients through the admin API, or falls back to the one configured
/// resource server when the admin file cannot be read (another machine, another data dir).
async fn register_resource_servers(settings: &Settings) -> Result<Vec<Client>, String> {
    let admin = match read_admin(settings) {
        Ok(admin) => admin,
        Err(path) => {
            eprintln!(
                "no admin credential at {path}: every user introspects as {}",
                settings.fallback_resource_server.id
            );
            return Ok(vec![settings.fallback_resource_server.clone()]);
        }
    };
    let mut clients = Vec::with_capacity(settings.resource_servers);
    for n in 1..=settings.resource_servers {
        let secret: String = {
            let mut rng = rand::thread_rng();
            (0..32).map(|_| rng.gen_range('a'..='z')).collect()
        };
        let client = Client {
            id: format!("loadtest-rs-{n}"),
            secret,
        };
        let body = serde_json::json!({
            "client_id": client.id,
            "client_secret": client.secret,
            "grant_types": [],
            "scopes": [],
        });
        let res = admin
            .request(reqwest::Method::POST, "/admin/clients")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("registering {}: {e}", client.id))?;
        if !res.status().is_success() {
            return Err(format!("registering {}: HTTP {}", client.id, res.status()));
        }
        clients.push(client);
    }
    Ok(clients)
}

/// The password of every `code-flow` account.
pub const ACCOUNT_PASSWORD: &str = "loadtest-password";

/// The username of the `code-flow` account `n` (from 1).
pub fn account_name(n: usize) -> String {
    format!("loadtest-user-{n}")
}

/// Accounts created through the admin API at the same time (each costs the server a password
/// hash).
const ACCOUNT_CONCURRENCY: usize = 4;

/// Creates the `code-flow` accounts `loadtest-user-1..=settings.users` through the admin API and
/// returns their usernames. An account left by an earlier campaign is removed first, which
/// also forgets its consents: every campaign starts with no consent given, so each account's
/// first login shows the consent page and later ones do not.
pub async fn prepare_accounts(settings: &Settings) -> Result<Vec<String>, String> {
    let admin = read_admin(settings).map_err(|path| {
        format!(
            "the code-flow scenario creates its accounts through the admin API, and there is no admin credential at {path} (set LOADTEST_DATA_DIR)"
        )
    })?;
    let started = Instant::now();
    let names: Vec<String> = (1..=settings.users).map(account_name).collect();
    stream::iter(names.iter())
        .map(|name| create_account(&admin, name))
        .buffer_unordered(ACCOUNT_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "created {} accounts (loadtest-user-1..{}) in {:.1} s",
        names.len(),
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(names)
}

async fn create_account(admin: &AdminApi, username: &str) -> Result<(), String> {
    let res = admin
        .request(reqwest::Method::DELETE, &format!("/admin/users/{username}"))
        .send()
        .await
        .map_err(|e| format!("removing {username}: {e}"))?;
    if !(res.status().is_success() || res.status() == reqwest::StatusCode::NOT_FOUND) {
        return Err(format!("removing {username}: HTTP {}", res.status()));
    }
    let body = serde_json::json!({
        "username": username,
        "password": ACCOUNT_PASSWORD,
        "email": null,
        "name": null,
    });
    let res = admin
        .request(reqwest::Method::POST, "/admin/users")
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("creating {username}: {e}"))?;
    if !res.status().is_success() {
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        return Err(format!("creating {username}: HTTP {status} {text}"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
}

async fn issue(http: &reqwest::Client, host: &str, client: &Client) -> Result<String, String> {
    let res = http
        .post(format!("{host}/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await
        .map_err(|e| format!("issuing a pool token: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("issuing a pool token: HTTP {}", res.status()));
    }
    let issued: Issued = res.json().await.map_err(|e| format!("issuing a pool token: {e}"))?;
    Ok(issued.access_token)
}

async fn revoke(http: &reqwest::Client, host: &str, client: &Client, token: &str) -> Result<(), String> {
    let res = http
        .post(format!("{host}/oauth/revoke"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("token", token)])
        .send()
        .await
        .map_err(|e| format!("revoking a pool token: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("revoking a pool token: HTTP {}", res.status()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(revoked: u32, unknown: u32) -> Pool {
        Pool {
            live: vec!["live".into()],
            revoked: vec!["revoked".into()],
            unknown: vec!["unknown".into()],
            resource_servers: vec![],
            issuer_client: Client::parse("a:b").unwrap(),
            revoked_percent: revoked,
            unknown_percent: unknown,
        }
    }

    #[test]
    fn draws_follow_the_configured_shares() {
        let p = pool(10, 20);
        let mut rng = rand::thread_rng();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let (token, expect) = p.draw(&mut rng);
            assert_eq!(expect == Expect::Active, token == "live");
            *counts.entry(token.to_owned()).or_insert(0u32) += 1;
        }
        // 10% ± 1.5%, 20% ± 1.5%, 70% ± 1.5% of 20,000 draws.
        for (token, share) in [("revoked", 2000), ("unknown", 4000), ("live", 14000)] {
            let n = counts[token];
            assert!(n.abs_diff(share) < 300, "{token}: {n} draws, expected about {share}");
        }
    }

    #[test]
    fn clients_parse_from_id_and_secret() {
        let c = Client::parse("rs-1:s3cret:with:colons").unwrap();
        assert_eq!((c.id.as_str(), c.secret.as_str()), ("rs-1", "s3cret:with:colons"));
        assert!(Client::parse("no-secret").is_none());
    }
}
