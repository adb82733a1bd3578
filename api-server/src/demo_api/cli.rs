//! The `api-server` command line. Every flag is also an `API_*` environment variable; outside
//! tools rely on these names.

use std::time::Duration;

use clap::Parser;

use crate::resource::ResourceServerConfig;

/// No `Debug`: it holds the client secret, and [`ApiArgs::resource_server_config`] gives the
/// redacted view.
#[derive(Parser)]
#[command(name = "api-server", version, about = "Tessera's demo resource server")]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, env = "API_BIND", default_value = "127.0.0.1:5000")]
    pub bind: String,
    /// Tessera's base URL; introspection is at /oauth/introspect below it.
    #[arg(long, env = "API_TESSERA_URL", default_value = "http://127.0.0.1:4000")]
    pub tessera_url: String,
    /// This resource server's client id at Tessera.
    #[arg(long, env = "API_CLIENT_ID", default_value = "api-server")]
    pub client_id: String,
    /// This resource server's client secret at Tessera.
    #[arg(
        long,
        env = "API_CLIENT_SECRET",
        default_value = "api-secret",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// How long an active token's introspection answer is reused (never past the token's exp)
    /// while the revocation feed is not connected.
    #[arg(long, env = "API_CACHE_TTL_MS", default_value_t = 5000)]
    pub cache_ttl_ms: u64,
    /// How long an active token's answer is reused when admitted while the revocation feed is
    /// connected (never past exp; back to --cache-ttl-ms after admission should the feed drop).
    #[arg(long, env = "API_CACHE_TTL_WITH_FEED_MS", default_value_t = 300_000)]
    pub cache_ttl_with_feed_ms: u64,
    /// Do not subscribe to Tessera's revocation feed (answers are then only ever cached for
    /// --cache-ttl-ms), e.g. for A/B benchmarks.
    #[arg(long, env = "API_NO_FEED", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_feed: bool,
    /// Make one introspection call per cache miss, even when many misses are out at once
    /// (by default, past four calls in flight, concurrent misses share batch calls).
    #[arg(long, env = "API_NO_INTROSPECT_BATCH", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_introspect_batch: bool,
    /// Silence (not even a heartbeat) after which the revocation feed's stream counts as cut.
    #[arg(long, env = "API_FEED_IDLE_TIMEOUT_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    pub feed_idle_timeout_ms: u64,
    /// How long an inactive token's answer is reused, while the revocation feed is not
    /// connected.
    #[arg(long, env = "API_NEGATIVE_TTL_MS", default_value_t = 1000)]
    pub negative_ttl_ms: u64,
    /// How long an inactive token's answer is reused when it is admitted while the revocation
    /// feed is connected.
    #[arg(long, env = "API_NEGATIVE_TTL_WITH_FEED_MS", default_value_t = 60_000)]
    pub negative_ttl_with_feed_ms: u64,
    /// Most cached answers kept.
    #[arg(long, env = "API_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: u64,
    /// Consecutive failed introspection calls that open the circuit breaker.
    #[arg(long, env = "API_BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe may go through.
    #[arg(long, env = "API_BREAKER_OPEN_MS", default_value_t = 5000)]
    pub breaker_open_ms: u64,
    /// Time limit of one introspection call, connecting included.
    #[arg(long, env = "API_UPSTREAM_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "API_WORKERS")]
    pub workers: Option<usize>,
    /// This API's RFC 8707 resource indicator, as registered for its client at Tessera; when
    /// set, tokens whose audience does not include it are refused.
    #[arg(long, env = "API_RESOURCE")]
    pub resource: Option<String>,
}

impl ApiArgs {
    pub fn resource_server_config(&self) -> ResourceServerConfig {
        ResourceServerConfig {
            cache_ttl: Duration::from_millis(self.cache_ttl_ms),
            cache_ttl_with_feed: Duration::from_millis(self.cache_ttl_with_feed_ms),
            feed: !self.no_feed,
            introspect_batch: !self.no_introspect_batch,
            feed_idle_timeout: Duration::from_millis(self.feed_idle_timeout_ms),
            negative_ttl: Duration::from_millis(self.negative_ttl_ms),
            negative_ttl_with_feed: Duration::from_millis(self.negative_ttl_with_feed_ms),
            cache_capacity: self.cache_capacity,
            breaker_failures: self.breaker_failures,
            breaker_open: Duration::from_millis(self.breaker_open_ms),
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms),
            resource: self.resource.clone(),
            ..ResourceServerConfig::new(&self.tessera_url, &self.client_id, &self.client_secret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_the_contract_names_exists_with_its_environment_variable() {
        let cmd = ApiArgs::command();
        for (flag, env) in [
            ("bind", "API_BIND"),
            ("tessera-url", "API_TESSERA_URL"),
            ("client-id", "API_CLIENT_ID"),
            ("client-secret", "API_CLIENT_SECRET"),
            ("cache-ttl-ms", "API_CACHE_TTL_MS"),
            ("breaker-failures", "API_BREAKER_FAILURES"),
            ("breaker-open-ms", "API_BREAKER_OPEN_MS"),
            ("resource", "API_RESOURCE"),
            ("cache-ttl-with-feed-ms", "API_CACHE_TTL_WITH_FEED_MS"),
            ("no-feed", "API_NO_FEED"),
            ("feed-idle-timeout-ms", "API_FEED_IDLE_TIMEOUT_MS"),
        ] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("--{flag} is missing"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env), "--{flag}");
        }
    }

    #[test]
    fn flags_become_the_resource_server_config() {
        let args = ApiArgs::try_parse_from([
            "api-server",
            "--tessera-url",
            "http://127.0.0.1:4100",
            "--cache-ttl-ms",
            "250",
            "--breaker-failures",
            "2",
            "--breaker-open-ms",
            "1500",
            "--resource",
            "https://api.example",
        ])
        .unwrap();
        let c = args.resource_server_config();
        assert_eq!(c.tessera_url, "http://127.0.0.1:4100");
        assert_eq!(c.cache_ttl, Duration::from_millis(250));
        assert_eq!(c.breaker_failures, 2);
        assert_eq!(c.breaker_open, Duration::from_millis(1500));
        assert_eq!(c.resource.as_deref(), Some("https://api.example"));
        assert_eq!(args.bind, "127.0.0.1:5000");
        assert!(ApiArgs::try_parse_from(["api-server", "--breaker-failures", "0"]).is_err());
    }

    #[test]
    fn the_feed_is_on_by_default_with_its_own_ttl_and_can_be_turned_off() {
        let c = ApiArgs::try_parse_from(["api-server"])
            .unwrap()
            .resource_server_config();
        assert!(c.feed);
        assert!(c.introspect_batch, "misses share calls by default");
        assert_eq!(c.cache_ttl_with_feed, Duration::from_secs(300));
        assert_eq!(c.feed_idle_timeout, Duration::from_secs(3));
        let c = ApiArgs::try_parse_from([
            "api-server",
            "--no-feed",
            "--cache-ttl-with-feed-ms",
            "60000",
            "--feed-idle-timeout-ms",
            "1500",
            "--no-introspect-batch",
        ])
        .unwrap()
        .resource_server_config();
        assert!(!c.feed);
        assert!(!c.introspect_batch);
        assert_eq!(c.cache_ttl_with_feed, Duration::from_secs(60));
        assert_eq!(c.feed_idle_timeout, Duration::from_millis(1500));
        assert!(ApiArgs::try_parse_from(["api-server", "--feed-idle-timeout-ms", "0"]).is_err());
    }
}
