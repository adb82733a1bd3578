//! The demo API server: `api-server --help` lists the flags (each also an `API_*` variable).

use clap::Parser;
use tessera_api::demo_api::{self, cli::ApiArgs};
use tessera_api::ResourceServer;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = ApiArgs::parse();
    let metrics = tessera_api::metrics::install().clone();
    let rs = ResourceServer::new(&args.resource_server_config()).map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(&args.bind)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    tracing::info!(
        bind = %listener.local_addr()?,
        tessera = %args.tessera_url,
        cache_ttl_ms = args.cache_ttl_ms,
        cache_ttl_with_feed_ms = args.cache_ttl_with_feed_ms,
        feed = !args.no_feed,
        breaker_failures = args.breaker_failures,
        breaker_open_ms = args.breaker_open_ms,
        "api-server listening"
    );
    demo_api::start(rs, listener, metrics, workers)?.await
}
