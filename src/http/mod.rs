//! The HTTP surface (actix-web). Handlers parse and validate, authenticate the client, make one
//! call to the [`Authority`], and map the reply; they hold no token logic and never touch sled.

mod admin;
pub mod client_addr;
mod csp;
pub mod error;
pub mod extract;
mod feed;
mod meta;
mod oauth;
mod oidc;
mod pages;
pub mod request_id;
pub mod session;

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub use client_addr::client_address;
pub use extract::InputLimits;
pub use oidc::metadata;

use crate::authority::Authority;
use crate::crypto::SecretDigest;
use crate::metrics::HttpMetrics;
use error::ApiError;

/// Shared by every worker (`web::Data` is an `Arc`).
pub struct AppState {
    pub authority: Authority,
    /// The one door for changes to clients, users and keys (the admin API's handlers).
    pub ops: crate::operations::Operations,
    /// Digest of this run's admin credential.
    pub admin_digest: SecretDigest,
    /// Seconds a sign-in lasts in the browser.
    pub session_ttl: u64,
    /// The revocation feed's reads of the change log.
    pub feed: crate::feed::Feed,
}

impl AppState {
    /// Whether cookies get `Secure`: the issuer is https.
    pub fn secure_cookies(&self) -> bool {
        self.authority.issuer().starts_with("https://")
    }
}

/// Every route pattern. Each resource is named after its pattern, so the metrics middleware can
/// find a request's route label in this table instead of allocating the pattern.
mod routes {
    pub const TOKEN: &str = "/oauth/token";
    pub const INTROSPECT: &str = "/oauth/introspect";
    pub const INTROSPECT_BATCH: &str = "/oauth/introspect/batch";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const REVOCATIONS: &str = "/oauth/revocations";
    pub const REVOCATIONS_STREAM: &str = "/oauth/revocations/stream";
    pub const AUTHORIZE: &str = "/oauth/authorize";
    pub const LOGIN: &str = "/oauth/login";
    pub const CONSENT: &str = "/oauth/consent";
    pub const LOGOUT: &str = "/oauth/logout";
    pub const USERINFO: &str = "/oauth/userinfo";
    pub const JWKS: &str = "/oauth/jwks";
    pub const DISCOVERY: &str = "/.well-known/oauth-authorization-server";
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub const HEALTH: &str = "/health";
    pub const READY: &str = "/ready";
    pub const METRICS: &str = "/metrics";
    pub const ADMIN_CLIENTS: &str = "/admin/clients";
    pub const ADMIN_CLIENT: &str = "/admin/clients/{client_id}";
    pub const ADMIN_USERS: &str = "/admin/users";
    pub const ADMIN_USER: &str = "/admin/users/{username}";
    pub const ADMIN_CLIENT_REVOKE: &str = "/admin/clients/{client_id}/revoke";
    pub const ADMIN_USER_REVOKE: &str = "/admin/users/{username}/revoke";
    pub const ADMIN_USER_EXPORT: &str = "/admin/users/{username}/export";
    pub const ADMIN_KEYS_ROTATE: &str = "/admin/keys/rotate";
    /// Route labels: every pattern, then `unmatched` for requests that matched none.
    pub const LABELS: &[&str] = &[
        TOKEN,
        INTROSPECT,
        INTROSPECT_BATCH,
        REVOKE,
        REVOCATIONS,
        REVOCATIONS_STREAM,
        AUTHORIZE,
        LOGIN,
        CONSENT,
        LOGOUT,
        USERINFO,
        JWKS,
        DISCOVERY,
        OPENID_CONFIGURATION,
        HEALTH,
        READY,
        METRICS,
        ADMIN_CLIENTS,
        ADMIN_CLIENT,
        ADMIN_USERS,
        ADMIN_USER,
        ADMIN_CLIENT_REVOKE,
        ADMIN_USER_REVOKE,
        ADMIN_USER_EXPORT,
        ADMIN_KEYS_ROTATE,
        "unmatched",
    ];
    pub const UNMATCHED: usize = LABELS.len() - 1;
}

/// The input limits (read by `extract`) and the error mapping of the extractors, shared by every
/// listener.
fn extractors(cfg: &mut web::ServiceConfig, state: web::Data<AppState>, limits: InputLimits) {
    let json = web::JsonConfig::default()
        .limit(limits.max_body_bytes)
        .error_handler(|e, _| ApiError::from(e).into());
    let path = web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into());
    cfg.app_data(state).app_data(limits).app_data(json).app_data(path);
}

fn not_found(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(|| async { Err::<HttpResponse, _>(ApiError::NotFound) }));
}

/// Registers the public routes: OAuth, OpenID Connect, pages, health, and `/metrics` when
/// `metrics_public`. The admin API is never here (`configure_admin`).
pub fn configure(
    state: web::Data<AppState>,
    limits: InputLimits,
    metrics_public: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        extractors(cfg, state, limits);
        cfg.service(single_method(routes::TOKEN, web::post().to(oauth::token), "POST"))
            .service(single_method(
                routes::INTROSPECT,
                web::post().to(oauth::introspect),
                "POST",
            ))
            .service(single_method(
                routes::INTROSPECT_BATCH,
                web::post().to(oauth::introspect_batch),
                "POST",
            ))
            .service(single_method(routes::REVOKE, web::post().to(oauth::revoke), "POST"))
            .service(single_method(routes::REVOCATIONS, web::get().to(feed::poll), "GET"))
            .service(single_method(
                routes::REVOCATIONS_STREAM,
                web::get().to(feed::stream),
                "GET",
            ))
            .service(single_method(routes::AUTHORIZE, web::get().to(pages::authorize), "GET"))
            .service(single_method(routes::LOGIN, web::post().to(pages::login), "POST"))
            .service(single_method(routes::CONSENT, web::post().to(pages::consent), "POST"))
            .service(
                web::resource(routes::LOGOUT)
                    .name(routes::LOGOUT)
                    .route(web::get().to(pages::logout))
                    .route(web::post().to(pages::confirm_logout))
                    .default_service(web::to(|| method_not_allowed("GET, POST"))),
            )
            .service(
                web::resource(routes::USERINFO)
                    .name(routes::USERINFO)
                    .route(web::get().to(oidc::userinfo))
                    .route(web::post().to(oidc::userinfo))
                    .default_service(web::to(|| method_not_allowed("GET, POST"))),
            )
            .service(single_method(routes::JWKS, web::get().to(oidc::jwks), "GET"))
            .service(single_method(routes::DISCOVERY, web::get().to(oidc::discovery), "GET"))
            .service(single_method(
                routes::OPENID_CONFIGURATION,
                web::get().to(oidc::discovery),
                "GET",
            ))
            .service(single_method(routes::HEALTH, web::get().to(meta::health), "GET"))
            .service(single_method(routes::READY, web::get().to(meta::ready), "GET"));
        if metrics_public {
            configure_metrics(cfg);
        }
        not_found(cfg);
    }
}

/// `/metrics` alone, for the public listener or the one `metrics_bind` names.
fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(single_method(routes::METRICS, web::get().to(meta::metrics), "GET"));
}

/// The metrics listener's routes: `/metrics`, and 404 for everything else.
pub fn configure_metrics_only(cfg: &mut web::ServiceConfig) {
    configure_metrics(cfg);
    not_found(cfg);
}

/// The admin listener's routes (Unix socket or `admin_bind`); each handler checks the bearer
/// credential of `admin.json`.
pub fn configure_admin(state: web::Data<AppState>, limits: InputLimits) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        extractors(cfg, state, limits);
        cfg.service(
            web::resource(routes::ADMIN_CLIENTS)
                .name(routes::ADMIN_CLIENTS)
                .route(web::get().to(admin::list_clients))
                .route(web::post().to(admin::put_client))
                .default_service(web::to(|| method_not_allowed("GET, POST"))),
        )
        .service(single_method(
            routes::ADMIN_CLIENT,
            web::delete().to(admin::remove_client),
            "DELETE",
        ))
        .service(
            web::resource(routes::ADMIN_USERS)
                .name(routes::ADMIN_USERS)
                .route(web::get().to(admin::list_users))
                .route(web::post().to(admin::put_user))
                .default_service(web::to(|| method_not_allowed("GET, POST"))),
        )
        .service(single_method(
            routes::ADMIN_USER,
            web::delete().to(admin::remove_user),
            "DELETE",
        ))
        .service(single_method(
            routes::ADMIN_CLIENT_REVOKE,
            web::post().to(admin::revoke_client),
            "POST",
        ))
        .service(single_method(
            routes::ADMIN_USER_REVOKE,
            web::post().to(admin::revoke_user),
            "POST",
        ))
        .service(single_method(
            routes::ADMIN_USER_EXPORT,
            web::get().to(admin::export_user),
            "GET",
        ))
        .service(single_method(
            routes::ADMIN_KEYS_ROTATE,
            web::post().to(admin::rotate_key),
            "POST",
        ));
        not_found(cfg);
    }
}

/// A resource that answers one method, and 405 with `Allow: allow` to every other.
fn single_method(path: &'static str, route: actix_web::Route, allow: &'static str) -> actix_web::Resource {
    web::resource(path)
        .name(path)
        .route(route)
        .default_service(web::to(move || method_not_allowed(allow)))
}

async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(serde_json::json!({"error": "method_not_allowed"}))
}

/// The one middleware every listener wraps its routes in, outermost (below HSTS): it gives the
/// request its id and address and serves it inside that context (`request_id`), refuses a head
/// over the bounds before routing (`extract::head_refusal`), counts the request by route pattern
/// and status and times it, and echoes the id. One layer rather than three: each `from_fn`
/// layer costs a boxed future and a service call per request, on the introspection path too.
/// The route label is the matched pattern (never the raw path), so label cardinality stays
/// bounded.
pub async fn edge<B: MessageBody>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    static METRICS: OnceLock<HttpMetrics> = OnceLock::new();
    let started = Instant::now();
    let (ctx, id) = request_id::context_of(&req);
    ctx.scope(async move {
        let mut res = match extract::head_refusal(&req) {
            Some(refused) => req.into_response(refused).map_into_right_body(),
            None => next.call(req).await?.map_into_left_body(),
        };
        let route = res
            .request()
            .match_name()
            .and_then(|name| routes::LABELS.iter().position(|r| *r == name))
            .unwrap_or(routes::UNMATCHED);
        let status = res.status().as_u16();
        METRICS
            .get_or_init(|| HttpMetrics::new(routes::LABELS))
            .observe(route, status, started.elapsed());
        tracing::debug!(method = %res.request().method(), path = res.request().path(), status, "request");
        if let Some(id) = id {
            res.headers_mut().insert(request_id::X_REQUEST_ID, id);
        }
        Ok(res)
    })
    .await
}
