//! A resource server's side of Tessera: everything an actix-web service needs to accept Tessera's
//! access tokens, plus the demo API and the demo client built on it.
//!
//! - [`introspect`]: the HTTP client that asks Tessera about a token (RFC 7662);
//! - [`cache`]: what Tessera said, kept briefly (longer while the feed is connected), keyed by
//!   a digest of the token;
//! - [`batch`]: concurrent cache misses sharing introspection calls (Tessera's batch endpoint);
//! - [`breaker`]: the circuit breaker around introspection calls;
//! - [`feed`]: the subscriber to Tessera's revocation event feed, which evicts the cached
//!   answers of revoked tokens within moments (SSE parsing, SET decoding, the index from token,
//!   grant, user and client to cache entries, and the recent revocations);
//! - [`resource`]: [`ResourceServer`], which puts those together, and [`Caller`];
//! - [`guard`]: the actix-web extractor and the `RequireScope` middleware;
//! - [`error`]: [`AuthError`] and its RFC 6750 answers;
//! - [`demo_api`]: the demo API (port 5000) built on the above;
//! - [`demo_client`]: the demo client (port 3001): the code flow with PKCE, a server-side
//!   session, and buttons that call the API, refresh and revoke;
//! - [`metrics`]: metric names.
//!
//! A service that accepts Tessera's tokens (this example is compiled by `cargo test`):
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use tessera_api::{Caller, RequireScope, ResourceServer, ResourceServerConfig};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let config = ResourceServerConfig::new("http://127.0.0.1:4000", "api-server", "api-secret");
//!     // One ResourceServer for the process: every worker shares its cache, breaker and feed
//!     // subscriber (made inside the runtime, which runs the subscriber).
//!     let rs = ResourceServer::new(&config).map_err(std::io::Error::other)?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .app_data(rs.clone())
//!             // Any valid access token; the handler gets the caller.
//!             .route(
//!                 "/api/protected",
//!                 web::get().to(|caller: Caller| async move { caller.client_id.clone() }),
//!             )
//!             // `write` needed; checked before the body is read.
//!             .service(
//!                 web::resource("/api/user/update")
//!                     .wrap(RequireScope::new("write"))
//!                     .route(web::post().to(|caller: Caller| async move { format!("{:?}", caller.sub) })),
//!             )
//!     })
//!     .bind("127.0.0.1:5000")?
//!     .run()
//!     .await
//! }
//! ```

pub mod batch;
pub mod breaker;
pub mod cache;
pub mod demo_api;
pub mod demo_client;
pub mod error;
pub mod feed;
pub mod guard;
pub mod introspect;
pub mod metrics;
pub mod resource;
pub mod scope;

pub use error::AuthError;
pub use feed::FeedStatus;
pub use guard::RequireScope;
pub use resource::{Caller, ResourceServer, ResourceServerConfig};
