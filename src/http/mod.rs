//! The HTTP surface (actix-web). Handlers parse and validate, authenticate the client, make one
//! call to the [`Authority`], and map the reply; they hold no token logic and never touch sled.

mod admin;
pub mod error;
mod meta;
mod oauth;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub use meta::discovery_document;

use crate::authority::Authority;
use crate::crypto::SecretDigest;
use error::ApiError;

/// Shared by every worker (`web::Data` is an `Arc`).
pub struct AppState {
    pub authority: Authority,
    /// Digest of this run's admin credential.
    pub admin_digest: SecretDigest,
    /// The RFC 8414 document, serialised once.
    pub discovery: web::Bytes,
}

/// Every route pattern. Each resource is named after its pattern, so the metrics middleware can
/// label a request with a `&'static str` from this table instead of allocating the pattern.
mod routes {
    pub const TOKEN: &str = "/oauth/token";
    pub const INTROSPECT: &str = "/oauth/introspect";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const DISCOVERY: &str = "/.well-known/oauth-authorization-server";
    pub const HEALTH: &str = "/health";
    pub const READY: &str = "/ready";
    pub const METRICS: &str = "/metrics";
    pub const ADMIN_CLIENTS: &str = "/admin/clients";
    pub const ADMIN_CLIENT: &str = "/admin/clients/{client_id}";
    pub const ALL: &[&str] = &[
        TOKEN,
        INTROSPECT,
        REVOKE,
        DISCOVERY,
        HEALTH,
        READY,
        METRICS,
        ADMIN_CLIENTS,
        ADMIN_CLIENT,
    ];
}

/// Registers every route, with the body limits and the error mapping of the extractors.
pub fn configure(state: web::Data<AppState>, max_body_bytes: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let form = web::FormConfig::default()
            .limit(max_body_bytes)
            .error_handler(|e, _| ApiError::from(e).into());
        let json = web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(|e, _| ApiError::from(e).into());
        let path = web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into());
        cfg.app_data(state)
            .app_data(form)
            .app_data(json)
            .app_data(path)
            .service(single_method(routes::TOKEN, web::post().to(oauth::token), "POST"))
            .service(single_method(
                routes::INTROSPECT,
                web::post().to(oauth::introspect),
                "POST",
            ))
            .service(single_method(routes::REVOKE, web::post().to(oauth::revoke), "POST"))
            .service(single_method(routes::DISCOVERY, web::get().to(meta::discovery), "GET"))
            .service(single_method(routes::HEALTH, web::get().to(meta::health), "GET"))
            .service(single_method(routes::READY, web::get().to(meta::ready), "GET"))
            .service(single_method(routes::METRICS, web::get().to(meta::metrics), "GET"))
            .service(
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
            .default_service(web::to(|| async { Err::<HttpResponse, _>(ApiError::NotFound) }));
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

/// Middleware body: counts each request by route pattern and status, and times it. The route
/// label is the matched pattern (never the raw path), so label cardinality stays bounded.
pub async fn observe<B: MessageBody>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_name()
        .and_then(|name| routes::ALL.iter().copied().find(|r| *r == name))
        .unwrap_or("unmatched");
    let status = res.status();
    crate::metrics::http_observed(route, status_label(status.as_u16()), started.elapsed());
    tracing::debug!(method = %res.request().method(), path = res.request().path(), status = status.as_u16(), "request");
    Ok(res)
}

fn status_label(code: u16) -> &'static str {
    const EXACT: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (500, "500"),
        (503, "503"),
    ];
    if let Some((_, label)) = EXACT.iter().find(|(c, _)| *c == code) {
        return label;
    }
    ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(code / 100).clamp(1, 5) - 1]
}
