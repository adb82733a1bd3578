//! The `tessera` command: `serve`, and `client add|list|remove`.
//!
//! Client commands open the data directory directly when no server holds it. sled allows one
//! process per database, so while a server runs they go through its admin API instead, using
//! the URL and credential the server wrote to `<data_dir>/admin.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tessera::admin::{ClientSpec, ClientView};
use tessera::config::Settings;
use tessera::oauth::GrantType;
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
    },
    /// List registered clients (secrets are never shown).
    List,
    /// Remove a client.
    Remove { client_id: String },
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
        running.server.await.map_err(|e| e.to_string())?;
        running.store.db().flush().map_err(|e| format!("final flush: {e}"))?;
        tracing::info!("tessera stopped");
        Ok(())
    })
}

/// One client operation, carried out either on the store or through the admin API.
enum Op {
    Add(ClientSpec),
    List,
    Remove(String),
}

enum Outcome {
    Added(ClientView),
    Listed(Vec<ClientView>),
    Removed(bool),
}

fn client(settings: Settings, cmd: ClientCommand) -> Result<(), String> {
    let mut generated = None;
    let op = match cmd {
        ClientCommand::Add {
            client_id,
            secret,
            redirect_uris,
            grant_types,
            scopes,
        } => {
            let client_secret = secret.unwrap_or_else(|| {
                let s = tessera::crypto::random_string("", 32);
                generated = Some(s.clone());
                s
            });
            Op::Add(ClientSpec {
                client_id,
                client_secret,
                redirect_uris,
                grant_types,
                scopes,
            })
        }
        ClientCommand::List => Op::List,
        ClientCommand::Remove { client_id } => Op::Remove(client_id),
    };
    datadir::ensure_dir(&settings.data_dir).map_err(|e| e.to_string())?;
    let outcome = match Store::open(&settings.data_dir, 16 * 1024 * 1024) {
        Ok(store) => offline(&settings, &store, op)?,
        Err(StoreError::Locked) => online(&settings, op)?,
        Err(e) => return Err(format!("opening {}: {e}", settings.data_dir.display())),
    };
    match outcome {
        Outcome::Added(view) => {
            println!("client {} saved", view.client_id);
            if let Some(secret) = generated {
                println!("client_secret: {secret}");
                println!("(shown once: Tessera stores only a digest of it)");
            }
        }
        Outcome::Listed(views) => {
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
        Outcome::Removed(true) => println!("client removed"),
        Outcome::Removed(false) => return Err("no such client".into()),
    }
    Ok(())
}

fn offline(settings: &Settings, store: &Store, op: Op) -> Result<Outcome, String> {
    let key = datadir::load_server_key(settings.server_key.as_deref(), &settings.server_key_file)
        .map_err(|e| e.to_string())?;
    let clients = store.clients().map_err(|e| e.to_string())?;
    Ok(match op {
        Op::Add(spec) => {
            let record = spec.into_record(&key)?;
            let view = ClientView::from(&record);
            clients.upsert(record).map_err(|e| e.to_string())?;
            Outcome::Added(view)
        }
        Op::List => Outcome::Listed(clients.list().iter().map(|c| ClientView::from(&**c)).collect()),
        Op::Remove(id) => Outcome::Removed(clients.remove(&id).map_err(|e| e.to_string())?),
    })
}

fn online(settings: &Settings, op: Op) -> Result<Outcome, String> {
    let dir = settings.data_dir.display();
    let admin = datadir::read_admin(&settings.data_dir)
        .map_err(|e| format!("{dir} is in use by another process, and its admin file cannot be read ({e}); stop that process or run this as its user"))?;
    let unreachable = |e: String| {
        format!(
            "{dir} is in use by a running server, but its admin API at {} did not answer: {e}",
            admin.url
        )
    };
    actix_web::rt::System::new().block_on(async {
        let http = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .finish();
        let url = format!("{}/admin/clients", admin.url);
        match op {
            Op::Add(spec) => {
                let mut res = http
                    .post(&url)
                    .bearer_auth(&admin.token)
                    .send_json(&spec)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                if res.status().is_success() {
                    res.json::<ClientView>()
                        .await
                        .map(Outcome::Added)
                        .map_err(|e| unreachable(e.to_string()))
                } else {
                    let body = res.body().await.unwrap_or_default();
                    Err(format!(
                        "the server refused the client: {}",
                        String::from_utf8_lossy(&body)
                    ))
                }
            }
            Op::List => {
                let mut res = http
                    .get(&url)
                    .bearer_auth(&admin.token)
                    .send()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                if !res.status().is_success() {
                    return Err(format!("the server answered {}", res.status()));
                }
                res.json::<Vec<ClientView>>()
                    .limit(16 * 1024 * 1024)
                    .await
                    .map(Outcome::Listed)
                    .map_err(|e| unreachable(e.to_string()))
            }
            Op::Remove(id) => {
                let id = percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC);
                let res = http
                    .delete(format!("{url}/{id}"))
                    .bearer_auth(&admin.token)
                    .send()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                match res.status().as_u16() {
                    204 => Ok(Outcome::Removed(true)),
                    404 => Ok(Outcome::Removed(false)),
                    s => Err(format!("the server answered {s}")),
                }
            }
        }
    })
}

// sled's write path allocates a new page version per insert and frees old ones from other
// threads (epoch-based reclamation); mimalloc's per-thread free lists make that cheaper than
// glibc's arenas: 14% more durable issuances per second for 15% less CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
