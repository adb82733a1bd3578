//! The demo API (port 5000): the seed's protected endpoints, built on the resource-server
//! library as any actix-web service would use it.
//!
//! | route | needs |
//! |---|---|
//! | `GET /api/public` | nothing: the same answer's shape with no token, the benchmark's baseline |
//! | `GET /api/protected` | any valid access token |
//! | `GET /api/user/profile` | `read` |
//! | `POST /api/user/update` | `write`, and a valid JSON body |
//! | `GET /api/data` | any valid access token |
//! | `GET /health`, `GET /metrics` | nothing (`/health` tells the breaker's and the feed's states) |
//!
//! Profiles live in memory, keyed by the token's `sub` (or its client, for client credentials):
//! this is a demo of the access rules, not of storage.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::dev::{Server, Service as _};
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::guard::RequireScope;
use crate::resource::{Caller, ResourceServer};

pub mod cli;

/// Largest JSON body `POST /api/user/update` reads.
const BODY_LIMIT: usize = 4096;
const MAX_NAME_CHARS: usize = 64;
const MAX_BIO_CHARS: usize = 280;

/// The demo API's state beyond the [`ResourceServer`].
struct Demo {
    profiles: DashMap<String, Profile>,
    metrics: PrometheusHandle,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub bio: String,
}

/// The body of `POST /api/user/update`: either field or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub bio: Option<String>,
}

impl ProfileUpdate {
    /// Checks the update and applies it to `profile`; on refusal, says why in words a client
    /// developer can act on.
    pub fn apply(self, profile: &mut Profile) -> Result<(), String> {
        if self.display_name.is_none() && self.bio.is_none() {
            return Err("give display_name, bio, or both".into());
        }
        if let Some(name) = &self.display_name {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                return Err(format!("display_name must be 1 to {MAX_NAME_CHARS} characters"));
            }
            if name.chars().any(char::is_control) {
                return Err("display_name must not contain control characters".into());
            }
        }
        if let Some(bio) = &self.bio {
            if bio.chars().count() > MAX_BIO_CHARS {
                return Err(format!("bio must be at most {MAX_BIO_CHARS} characters"));
            }
            if bio.chars().any(|c| c.is_control() && c != '\n') {
                return Err("bio must not contain control characters other than newlines".into());
            }
        }
        if let Some(name) = self.display_name {
            profile.display_name = name.trim().to_owned();
        }
        if let Some(bio) = self.bio {
            profile.bio = bio;
        }
        Ok(())
    }
}

/// Whose profile a caller sees: the user's, or for a client-credentials token, the client's.
fn profile_key(caller: &Caller) -> String {
    match &caller.sub {
        Some(sub) => format!("user:{sub}"),
        None => format!("client:{}", caller.client_id),
    }
}

fn default_profile(caller: &Caller) -> Profile {
    Profile {
        display_name: caller.username.clone().unwrap_or_else(|| caller.client_id.clone()),
        bio: String::new(),
    }
}

/// The answer of `/api/protected` and `/api/public`: one shape, so the benchmark compares the
/// cost of the token check and nothing else.
#[derive(Serialize)]
struct Greeting<'a> {
    message: &'a str,
    client_id: Option<&'a str>,
    sub: Option<&'a str>,
    scope: Option<String>,
}

async fn public() -> HttpResponse {
    HttpResponse::Ok().json(Greeting {
        message: "public: no token needed",
        client_id: None,
        sub: None,
        scope: None,
    })
}

async fn protected(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(Greeting {
        message: "protected: your token is valid",
        client_id: Some(&caller.client_id),
        sub: caller.sub.as_deref(),
        scope: Some(caller.scopes.to_string()),
    })
}

fn profile_json(caller: &Caller, profile: &Profile) -> serde_json::Value {
    json!({
        "sub": caller.sub,
        "username": caller.username,
        "client_id": caller.client_id,
        "scope": caller.scopes.to_string(),
        "display_name": profile.display_name,
        "bio": profile.bio,
    })
}

async fn profile(caller: Caller, demo: web::Data<Demo>) -> HttpResponse {
    let profile = demo
        .profiles
        .get(&profile_key(&caller))
        .map(|p| p.clone())
        .unwrap_or_else(|| default_profile(&caller));
    HttpResponse::Ok().json(profile_json(&caller, &profile))
}

async fn update(caller: Caller, demo: web::Data<Demo>, body: web::Json<ProfileUpdate>) -> HttpResponse {
    let mut entry = demo
        .profiles
        .entry(profile_key(&caller))
        .or_insert_with(|| default_profile(&caller));
    let mut updated = entry.clone();
    match body.into_inner().apply(&mut updated) {
        Ok(()) => {
            *entry = updated.clone();
            HttpResponse::Ok().json(profile_json(&caller, &updated))
        }
        Err(why) => invalid_request(&why),
    }
}

async fn data(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "client_id": caller.client_id,
        "items": [
            {"id": 1, "name": "tessera", "kind": "authorization server"},
            {"id": 2, "name": "api-server", "kind": "resource server"},
            {"id": 3, "name": "demo-client", "kind": "client"},
        ],
    }))
}

async fn health(rs: web::Data<ResourceServer>) -> HttpResponse {
    // The API answers whatever the breaker says; the breaker's state tells an operator whether
    // new tokens can be checked right now, the feed's whether revocations reach the cache.
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "breaker": rs.breaker_state().as_str(),
        "feed": rs.feed_status().as_str(),
    }))
}

async fn render_metrics(demo: web::Data<Demo>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(demo.metrics.render())
}

fn invalid_request(description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": "invalid_request", "error_description": description }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": "not_found", "error_description": "no such endpoint" }))
}

/// Routes of the demo API, for an `App` that has a `web::Data<ResourceServer>`.
fn routes(cfg: &mut web::ServiceConfig) {
    let json_config = web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .error_handler(|err, _req: &HttpRequest| {
            let why = match &err {
                actix_web::error::JsonPayloadError::ContentType => {
                    "the body must be JSON (Content-Type: application/json)".to_owned()
                }
                actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                | actix_web::error::JsonPayloadError::Overflow { .. } => {
                    format!("the body must be at most {BODY_LIMIT} bytes")
                }
                other => format!("the body is not a valid update: {other}"),
            };
            actix_web::error::InternalError::from_response(err, invalid_request(&why)).into()
        });
    cfg.route("/api/public", web::get().to(public))
        .route("/api/protected", web::get().to(protected))
        .service(
            web::resource("/api/user/profile")
                .wrap(RequireScope::new("read"))
                .route(web::get().to(profile)),
        )
        .service(
            web::resource("/api/user/update")
                .app_data(json_config)
                .wrap(RequireScope::new("write"))
                .route(web::post().to(update)),
        )
        .route("/api/data", web::get().to(data))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(render_metrics))
        .default_service(web::to(not_found));
}

/// The metric label for a route: the matched pattern from a fixed list, so labels stay few.
fn route_label(req: &HttpRequest) -> &'static str {
    const ROUTES: &[&str] = &[
        "/api/public",
        "/api/protected",
        "/api/user/profile",
        "/api/user/update",
        "/api/data",
        "/health",
        "/metrics",
    ];
    let path = req.path();
    ROUTES.iter().find(|r| **r == path).copied().unwrap_or("other")
}

/// Starts the demo API on `listener`; the caller runs or spawns the returned server.
pub fn start(
    rs: ResourceServer,
    listener: TcpListener,
    metrics: PrometheusHandle,
    workers: usize,
) -> std::io::Result<Server> {
    crate::metrics::describe();
    let demo = web::Data::new(Demo {
        profiles: DashMap::new(),
        metrics,
    });
    let rs = web::Data::new(rs);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(rs.clone())
            .app_data(demo.clone())
            .wrap_fn(|req, srv| {
                let started = Instant::now();
                let route = route_label(req.request());
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let status = res.status();
                    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => status.as_u16().to_string())
                        .increment(1);
                    metrics::histogram!(crate::metrics::HTTP_DURATION, "route" => route).record(started.elapsed());
                    Ok(res)
                }
            })
            .configure(routes)
    })
    .workers(workers.max(1))
    .listen(listener)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Profile {
        Profile {
            display_name: "alice".into(),
            bio: String::new(),
        }
    }

    fn update(json: &str) -> Result<Profile, String> {
        let u: ProfileUpdate = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut p = blank();
        u.apply(&mut p).map(|()| p)
    }

    #[test]
    fn a_valid_update_changes_only_what_it_names() {
        let p = update(r#"{"display_name":"  Alice L.  "}"#).unwrap();
        assert_eq!(p.display_name, "Alice L.");
        assert_eq!(p.bio, "");
        let p = update(r#"{"bio":"line one\nline two"}"#).unwrap();
        assert_eq!(
            (p.display_name.as_str(), p.bio.as_str()),
            ("alice", "line one\nline two")
        );
    }

    #[test]
    fn bad_updates_are_refused_with_a_reason() {
        for (body, reason) in [
            ("{}", "give display_name"),
            (r#"{"display_name":"   "}"#, "1 to 64"),
            (&format!(r#"{{"display_name":"{}"}}"#, "x".repeat(65)), "1 to 64"),
            (r#"{"display_name":"a\u0007b"}"#, "control"),
            (&format!(r#"{{"bio":"{}"}}"#, "é".repeat(281)), "at most 280"),
            (r#"{"bio":"tab\there"}"#, "control"),
            (r#"{"role":"admin"}"#, "unknown field"),
            (r#"{"display_name":7}"#, "invalid type"),
        ] {
            let err = update(body).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
        // The longest accepted values.
        assert!(update(&format!(
            r#"{{"display_name":"{}","bio":"{}"}}"#,
            "é".repeat(64),
            "é".repeat(280)
        ))
        .is_ok());
    }
}
