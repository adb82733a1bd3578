//! The admin API, for `tessera client|user|keys ...` while the server holds the data directory.
//!
//! Authenticated by the per-start credential in `<data_dir>/admin.json`, compared as a digest in
//! constant time. Not part of the OAuth surface and not advertised in discovery. Every handler is
//! one call to [`crate::operations::Operations`], the door every change goes through.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::admin::{ClientSpec, UserSpec};
use crate::operations::Door;
use crate::signing::Algorithm;

fn require_admin(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(ApiError::AdminUnauthorized)?;
    if state
        .admin_digest
        .matches(&state.authority.key().admin_digest(presented.trim()))
    {
        Ok(())
    } else {
        tracing::warn!("admin request with a wrong credential");
        Err(ApiError::AdminUnauthorized)
    }
}

pub async fn list_clients(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    Ok(HttpResponse::Ok().json(state.ops.list_clients()))
}

pub async fn put_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    spec: web::Json<ClientSpec>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let view = state.ops.put_client(spec.into_inner(), Door::AdminApi).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Removes a client; answers what its removal revoked.
pub async fn remove_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let revoked = state.ops.remove_client(&id, Door::AdminApi, crate::unix_now()).await?;
    Ok(HttpResponse::Ok().json(revoked))
}

/// Revokes every token of a client; the client stays.
pub async fn revoke_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let revoked = state.ops.revoke_client(&id, Door::AdminApi, crate::unix_now()).await?;
    Ok(HttpResponse::Ok().json(revoked))
}

pub async fn list_users(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    Ok(HttpResponse::Ok().json(state.ops.list_users()?))
}

/// Creates or updates a user (a new password revokes the user's tokens).
pub async fn put_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    spec: web::Json<UserSpec>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let view = state
        .ops
        .put_user(spec.into_inner(), Door::AdminApi, crate::unix_now())
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// Removes a user; answers what the removal revoked.
pub async fn remove_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let revoked = state
        .ops
        .remove_user(&username, Door::AdminApi, crate::unix_now())
        .await?;
    Ok(HttpResponse::Ok().json(revoked))
}

/// Revokes every token issued on behalf of a user; the user stays.
pub async fn revoke_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let revoked = state
        .ops
        .revoke_user(&username, Door::AdminApi, crate::unix_now())
        .await?;
    Ok(HttpResponse::Ok().json(revoked))
}

/// Everything Tessera holds about a user, for a data-subject request.
pub async fn export_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let export = state.ops.export_user(&username, crate::unix_now()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(export))
}

#[derive(serde::Deserialize)]
pub struct RotateKey {
    alg: Option<Algorithm>,
}

/// Adds a new ID-token signing key and retires the active one; answers `{"kid": ...}`.
pub async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Option<web::Json<RotateKey>>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let alg = body.and_then(|b| b.alg).unwrap_or(Algorithm::RS256);
    let kid = state.ops.rotate_key(alg, Door::AdminApi, crate::unix_now()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "kid": kid })))
}
