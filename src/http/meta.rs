//! Health, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.authority.ready().await {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "a token shard did not answer"}))
    }
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::install().render())
}
