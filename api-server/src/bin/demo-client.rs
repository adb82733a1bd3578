//! `demo-client`: the demo web application that signs in with Tessera and calls the demo API
//! (see `tessera_api::demo_client`). Serves http://127.0.0.1:3001 by default, matching the
//! client registered in the repository's `tessera.toml`.

use std::net::TcpListener;

use clap::Parser;
use tessera_api::demo_client::{start, DemoClientConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "The Tessera demo client: sign in with Tessera, then call the demo API"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "DEMO_BIND", default_value = "127.0.0.1:3001")]
    bind: String,
    /// Tessera's base URL.
    #[arg(long, env = "DEMO_TESSERA_URL", default_value = "http://127.0.0.1:4000")]
    tessera_url: String,
    /// The demo API's base URL.
    #[arg(long, env = "DEMO_API_URL", default_value = "http://127.0.0.1:5000")]
    api_url: String,
    /// This client's id at Tessera.
    #[arg(long, env = "DEMO_CLIENT_ID", default_value = "demo-client")]
    client_id: String,
    /// This client's secret at Tessera.
    #[arg(
        long,
        env = "DEMO_CLIENT_SECRET",
        default_value = "demo-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// The callback URL registered at Tessera [default: http://<bind>/callback].
    #[arg(long, env = "DEMO_REDIRECT_URI")]
    redirect_uri: Option<String>,
    /// The scopes to ask for, space-separated.
    #[arg(
        long,
        env = "DEMO_SCOPE",
        default_value = "openid profile email read write offline_access"
    )]
    scope: String,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();
    let listener = TcpListener::bind(&args.bind)?;
    let bound = listener.local_addr()?;
    // From the bound address rather than `--bind`, so that port 0 gives a usable callback URL.
    let redirect_uri = args.redirect_uri.unwrap_or_else(|| format!("http://{bound}/callback"));
    tracing::info!(
        %bound,
        tessera = %args.tessera_url,
        api = %args.api_url,
        client_id = %args.client_id,
        redirect_uri = %redirect_uri,
        "demo client listening"
    );
    let config = DemoClientConfig {
        tessera_url: args.tessera_url,
        api_url: args.api_url,
        client_id: args.client_id,
        client_secret: args.client_secret,
        redirect_uri,
        scope: args.scope,
    };
    start(config, listener)?.await
}
