//! The `tessera` command: `serve`, `client add|list|remove`, `user add|list|remove|passwd` and
//! `keys rotate`.
//!
//! Management commands open the data directory directly when no server holds it. sled allows one
//! process per database, so while a server runs they go through its admin API instead (its Unix
//! socket, or `admin_bind`), using the address and credential the server wrote to
//! `<data_dir>/admin.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use serde::de::DeserializeOwned;
use tessera::admin::{ClientSpec, ClientView, UserSpec, UserView};
use tessera::config::Settings;
use tessera::oauth::GrantType;
use tessera::signing::{Algorithm, SigningKeys};
use tessera::store::{Store, StoreError};
use tessera::{datadir, server};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "OAuth 2.1 authorization server built for fast, durable introspection"
)]
struct Cli {
    /// TOML configuration file; `TESSERA_*` environment variables override it.
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage registered clients (works whether or not the server is running).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users who can sign in (works whether or not the server is running).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the ID-token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client, or replace one with the same id. The secret is printed once.
    Add {
        client_id: String,
        /// Use this secret instead of generating one.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// authorization_code, refresh_token or client_credentials; repeatable.
        #[arg(long = "grant-type", value_parser = parse_grant)]
        grant_types: Vec<GrantType>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Where RP-initiated logout may return to; repeatable.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
    },
    /// List registered clients (secrets are never shown).
    List,
    /// Remove a client.
    Remove { client_id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user, or replace one with the same name (keeping their subject identifier).
    /// The password is read from the first line of standard input unless --password is given.
    Add {
        username: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List users (password hashes are never shown).
    List,
    /// Remove a user and the consents they gave.
    Remove { username: String },
    /// Set a user's password, read from standard input unless --password is given.
    Passwd {
        username: String,
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key and retire the current one. Retired keys stay in the JWKS until
    /// the ID tokens they signed have expired.
    Rotate {
        /// RS256 or ES256.
        #[arg(long, default_value = "RS256")]
        alg: Algorithm,
    },
}

fn parse_grant(s: &str) -> Result<GrantType, String> {
    GrantType::parse(s).ok_or_else(|| format!("unknown grant type {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Serve => serve(settings),
        Command::Client(cmd) => client(settings, cmd),
        Command::User(cmd) => user(settings, cmd),
        Command::Keys(KeysCommand::Rotate { alg }) => rotate_key(settings, alg),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tessera: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `TESSERA_LOG` (default `info`), as text, or as one JSON object
/// per line with `TESSERA_LOG_FORMAT=json`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let running = server::start(settings).await.map_err(|e| e.to_string())?;
        let stopped = running.server.await.map_err(|e| e.to_string());
        running.side.stop(true).await;
        stopped?;
        running.store.db().flush().map_err(|e| format!("final flush: {e}"))?;
        tracing::info!("tessera stopped");
        Ok(())
    })
}

/// Opens the store for a management command: `Ok(Some)` when no server holds it, `Ok(None)`
/// when a running server does (the command then goes through its admin API).
fn open_store(settings: &Settings) -> Result<Option<Store>, String> {
    datadir::ensure_dir(&settings.data_dir).map_err(|e| e.to_string())?;
    match Store::open(&settings.data_dir, 16 * 1024 * 1024) {
        Ok(store) => Ok(Some(store)),
        Err(StoreError::Locked) => Ok(None),
        Err(e) => Err(format!("opening {}: {e}", settings.data_dir.display())),
    }
}

/// The running server's admin API.
struct AdminApi {
    endpoint: datadir::AdminEndpoint,
    token: String,
    dir: String,
}

enum Method {
    Get,
    Post,
    Delete,
}

impl AdminApi {
    fn connect(settings: &Settings) -> Result<Self, String> {
        let dir = settings.data_dir.display().to_string();
        let admin = datadir::read_admin(&settings.data_dir)
            .map_err(|e| format!("{dir} is in use by another process, and its admin file cannot be read ({e}); stop that process or run this as its user"))?;
        Ok(AdminApi {
            endpoint: admin.endpoint(),
            token: admin.token,
            dir,
        })
    }

    fn location(&self) -> String {
        match &self.endpoint {
            datadir::AdminEndpoint::Unix(path) => path.display().to_string(),
            datadir::AdminEndpoint::Tcp(url) => url.clone(),
        }
    }

    /// Sends one request; `Ok(None)` for 404, the decoded body for other successes.
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, String> {
        let unreachable = |e: String| {
            format!(
                "{} is in use by a running server, but its admin API at {} did not answer: {e}",
                self.dir,
                self.location()
            )
        };
        let builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        // Over the socket the URL's host only fills the Host header.
        let (builder, base) = match &self.endpoint {
            datadir::AdminEndpoint::Unix(socket) => (builder.unix_socket(socket.as_path()), "http://admin".to_owned()),
            datadir::AdminEndpoint::Tcp(url) => (builder, url.clone()),
        };
        let http = builder.build().map_err(|e| unreachable(e.to_string()))?;
        let url = format!("{base}{path}");
        let req = match method {
            Method::Get => http.get(&url),
            Method::Post => http.post(&url),
            Method::Delete => http.delete(&url),
        }
        .bearer_auth(&self.token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        runtime.block_on(async {
            let res = req.send().await.map_err(|e| unreachable(e.to_string()))?;
            match res.status().as_u16() {
                404 => Ok(None),
                204 => serde_json::from_value(serde_json::Value::Null)
                    .map(Some)
                    .map_err(|e| unreachable(e.to_string())),
                s if (200..300).contains(&s) => res.json::<T>().await.map(Some).map_err(|e| unreachable(e.to_string())),
                _ => {
                    let body = res.text().await.unwrap_or_default();
                    Err(format!("the server refused: {body}"))
                }
            }
        })
    }
}

impl AdminApi {
    /// `DELETE /admin/{collection}/{name}`; whether it existed.
    fn remove(&self, collection: &str, name: &str) -> Result<bool, String> {
        let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        Ok(self
            .call::<()>(Method::Delete, &format!("/admin/{collection}/{name}"), None)?
            .is_some())
    }
}

fn client(settings: Settings, cmd: ClientCommand) -> Result<(), String> {
    let store = open_store(&settings)?;
    match cmd {
        ClientCommand::Add {
            client_id,
            secret,
            redirect_uris,
            grant_types,
            scopes,
            post_logout_redirect_uris,
        } => {
            let generated = secret.is_none();
            let client_secret = secret.unwrap_or_else(|| tessera::crypto::random_string("", 32));
            let spec = ClientSpec {
                client_id,
                client_secret: client_secret.clone(),
                redirect_uris,
                grant_types,
                scopes,
                post_logout_redirect_uris,
            };
            let view = match &store {
                Some(store) => {
                    let key = server_key(&settings)?;
                    let record = spec.into_record(&key)?;
                    let view = ClientView::from(&record);
                    store
                        .clients()
                        .and_then(|c| c.upsert(record))
                        .map_err(|e| e.to_string())?;
                    view
                }
                None => AdminApi::connect(&settings)?
                    .call::<ClientView>(
                        Method::Post,
                        "/admin/clients",
                        Some(serde_json::to_value(&spec).expect("json")),
                    )?
                    .ok_or("the server has no admin API for clients")?,
            };
            println!("client {} saved", view.client_id);
            if generated {
                println!("client_secret: {client_secret}");
                println!("(shown once: Tessera stores only a digest of it)");
            }
        }
        ClientCommand::List => {
            let views: Vec<ClientView> = match &store {
                Some(store) => {
                    let clients = store.clients().map_err(|e| e.to_string())?;
                    clients.list().iter().map(|c| ClientView::from(&**c)).collect()
                }
                None => AdminApi::connect(&settings)?
                    .call(Method::Get, "/admin/clients", None)?
                    .unwrap_or_default(),
            };
            if views.is_empty() {
                println!("no clients");
            }
            for v in views {
                let grants: Vec<_> = v.grant_types.iter().map(|g| g.as_str()).collect();
                println!(
                    "{}\tgrants={}\tscopes={}\tredirect_uris={}",
                    v.client_id,
                    grants.join(","),
                    v.scopes.join(" "),
                    v.redirect_uris.join(",")
                );
            }
        }
        ClientCommand::Remove { client_id } => {
            let existed = match &store {
                Some(store) => store
                    .clients()
                    .and_then(|c| c.remove(&client_id))
                    .map_err(|e| e.to_string())?,
                None => AdminApi::connect(&settings)?.remove("clients", &client_id)?,
            };
            if !existed {
                return Err("no such client".into());
            }
            println!("client removed");
        }
    }
    Ok(())
}

fn server_key(settings: &Settings) -> Result<tessera::crypto::ServerKey, String> {
    datadir::load_server_key(settings.server_key.as_deref(), &settings.server_key_file).map_err(|e| e.to_string())
}

/// The password from the flag, or the first line of standard input.
fn password_from(flag: Option<String>) -> Result<String, String> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn save_user(settings: &Settings, store: Option<&Store>, spec: UserSpec) -> Result<UserView, String> {
    match store {
        Some(store) => {
            let users = store.users().map_err(|e| e.to_string())?;
            let existing = users.get(&spec.username).map_err(|e| e.to_string())?;
            let record = spec.into_record(existing.as_ref())?;
            users.upsert(&record).map_err(|e| e.to_string())?;
            Ok(UserView::from(&record))
        }
        None => AdminApi::connect(settings)?
            .call::<UserView>(
                Method::Post,
                "/admin/users",
                Some(serde_json::to_value(&spec).expect("json")),
            )?
            .ok_or_else(|| "the server has no admin API for users".into()),
    }
}

fn list_users(settings: &Settings, store: Option<&Store>) -> Result<Vec<UserView>, String> {
    match store {
        Some(store) => {
            let users = store.users().and_then(|u| u.list()).map_err(|e| e.to_string())?;
            Ok(users.iter().map(UserView::from).collect())
        }
        None => Ok(AdminApi::connect(settings)?
            .call(Method::Get, "/admin/users", None)?
            .unwrap_or_default()),
    }
}

fn user(settings: Settings, cmd: UserCommand) -> Result<(), String> {
    let store = open_store(&settings)?;
    match cmd {
        UserCommand::Add {
            username,
            password,
            email,
            name,
        } => {
            let spec = UserSpec {
                username,
                password: password_from(password)?,
                email,
                name,
            };
            let view = save_user(&settings, store.as_ref(), spec)?;
            println!("user {} saved (sub {})", view.username, view.sub);
        }
        UserCommand::List => {
            let users = list_users(&settings, store.as_ref())?;
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                println!(
                    "{}\tsub={}\temail={}\tname={}",
                    u.username,
                    u.sub,
                    u.email.unwrap_or_default(),
                    u.name.unwrap_or_default()
                );
            }
        }
        UserCommand::Remove { username } => {
            let existed = match &store {
                Some(store) => store
                    .users()
                    .and_then(|u| u.remove(&username))
                    .map_err(|e| e.to_string())?,
                None => AdminApi::connect(&settings)?.remove("users", &username)?,
            };
            if !existed {
                return Err("no such user".into());
            }
            println!("user removed");
        }
        UserCommand::Passwd { username, password } => {
            let current = list_users(&settings, store.as_ref())?
                .into_iter()
                .find(|u| u.username == username)
                .ok_or("no such user")?;
            let spec = UserSpec {
                username,
                password: password_from(password)?,
                email: current.email,
                name: current.name,
            };
            save_user(&settings, store.as_ref(), spec)?;
            println!("password changed");
        }
    }
    Ok(())
}

fn rotate_key(settings: Settings, alg: Algorithm) -> Result<(), String> {
    let now = tessera::unix_now();
    let kid = match open_store(&settings)? {
        // The keys are files, but a running server holds them in memory: rotate there.
        Some(_) => {
            let mut keys = SigningKeys::load_or_create(&settings.data_dir, alg, now).map_err(|e| e.to_string())?;
            keys.rotate(alg, now, settings.access_token_ttl.as_secs())
                .map_err(|e| e.to_string())?
        }
        None => {
            #[derive(serde::Deserialize)]
            struct Rotated {
                kid: String,
            }
            AdminApi::connect(&settings)?
                .call::<Rotated>(
                    Method::Post,
                    "/admin/keys/rotate",
                    Some(serde_json::json!({ "alg": alg.as_str() })),
                )?
                .ok_or("the server has no admin API for keys")?
                .kid
        }
    };
    println!("new signing key {kid} ({}) is active", alg.as_str());
    Ok(())
}

// sled's write path allocates a new page version per insert and frees old ones from other
// threads (epoch-based reclamation); mimalloc's per-thread free lists make that cheaper than
// glibc's arenas: 14% more durable issuances per second for 15% less CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
