//! The demo API in the test process, on an ephemeral port, in front of a Tessera at some URL.

use std::time::Duration;

use tessera_api::{ResourceServer, ResourceServerConfig};

use super::{client, Reply};

pub struct ApiServer {
    pub base: String,
    pub handle: actix_web::dev::ServerHandle,
}

/// A resource-server config for `tessera` with the test clients' credentials and `cache_ttl`,
/// without the revocation feed: these tests are about the TTL-only cache (tests/api_feed.rs is
/// about the feed).
pub fn config(tessera: &str, cache_ttl: Duration) -> ResourceServerConfig {
    ResourceServerConfig {
        cache_ttl,
        feed: false,
        ..ResourceServerConfig::new(tessera, "api-server", "api-secret")
    }
}

/// The same with the feed on (the default), and `cache_ttl_with_feed` while it is connected.
pub fn config_with_feed(tessera: &str, cache_ttl: Duration, cache_ttl_with_feed: Duration) -> ResourceServerConfig {
    ResourceServerConfig {
        cache_ttl,
        cache_ttl_with_feed,
        ..ResourceServerConfig::new(tessera, "api-server", "api-secret")
    }
}

impl ApiServer {
    /// Starts the demo API. A process has one metrics recorder: the API's metrics go to the one
    /// Tessera installs (in-process Tessera servers install it too), and its `/metrics` renders it.
    pub async fn start(config: ResourceServerConfig) -> ApiServer {
        let metrics = tessera::metrics::install().clone();
        let rs = ResourceServer::new(&config).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tessera_api::demo_api::start(rs, listener, metrics, 1).unwrap();
        let handle = server.handle();
        actix_rt::spawn(server);
        ApiServer { base, handle }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = client().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        let mut req = client()
            .post(format!("{}{path}", self.base))
            .insert_header(("content-type", "application/json"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send_body(body.to_owned()).await.unwrap()).await
    }

    /// The sum of a counter over all its label sets, from this API's `/metrics`.
    pub async fn counter(&self, name: &str, label: &str) -> f64 {
        sum_metric(&self.get("/metrics", None).await.text, name, label)
    }
}

/// Sums the samples of `name` whose labels contain `label` (or all, for "").
pub fn sum_metric(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
