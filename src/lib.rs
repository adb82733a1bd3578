//! Tessera: an OAuth 2.1 authorization server built for fast, durable token introspection.
//!
//! # Layout
//! - [`config`]: raw configuration (TOML, environment) validated into [`config::Settings`].
//! - [`oauth`]: protocol rules (scopes, client credentials, grants, error vocabulary); no HTTP,
//!   no storage.
//! - [`crypto`]: the server key, token minting, HMAC digests, constant-time comparison.
//! - [`store`]: sled trees, records, the client registry, group commit; no HTTP, no actors.
//! - [`actors`]: the `TokenShard` actors, each owning one partition, and the router to them.
//! - [`authority`]: the OAuth and OpenID Connect operations, over the registries, the shards
//!   and the signing keys; no HTTP.
//! - [`feed`]: the revocation feed: the change log as signed Security Event Tokens, filtered
//!   by each resource server's audience; no HTTP.
//! - [`limits`]: rate limits and quotas, and which address a request comes from.
//! - [`http`]: actix-web handlers, the single error-to-response mapping, the one middleware
//!   (request context, head bounds, metrics).
//! - [`admin`]: client and user registration rules shared by the config file, CLI and admin
//!   API.
//! - [`operations`]: the one door for changes to clients, users and keys (config seeding, the
//!   CLI, the admin API), with their audit events and revocations.
//! - [`signing`]: OpenID Connect ID-token signing keys (RS256, ES256) in `keys/`: rotation, the
//!   JWKS, JWS signing and verification.
//! - [`audit`]: the audit log (one JSON object per security event), written off the request
//!   path.
//! - [`datadir`]: the files beside the database (server key, admin credential).
//! - [`metrics`]: every metric name, and the Prometheus recorder.
//! - [`logging`]: the tracing subscriber, whose lines end with their request's id.
//! - [`vocab`]: grant types and refresh policies, the words `oauth` and `store` share.
//! - [`server`]: assembles all of the above into a running server.
//! - [`tls`]: the rustls configuration for https on the public listener.
//!
//! See `ARCHITECTURE.md` for the request flow and the invariants each layer keeps.

pub mod actors;
pub mod admin;
pub mod audit;
pub mod authority;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod datadir;
pub mod feed;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod operations;
pub mod server;
pub mod signing;
pub mod store;
pub mod tls;
pub mod vocab;

/// Seconds since the Unix epoch. Read once per request at the edge and passed down, so the
/// protocol and storage layers take time as a value.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
