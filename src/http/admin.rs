//! The admin API, for `tessera client|user|keys ...` while the server holds the data directory.
//!
//! Authenticated by the per-start credential in `<data_dir>/admin.json`, compared as a digest in
//! constant time, by the [`Admin`] extractor: a handler that takes it cannot run unauthenticated.
//! Not part of the OAuth surface and not advertised in discovery. Every handler is one call to
//! [`crate::operations::Operations`], the door every change goes through.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::admin::{ClientSpec, UserSpec};
use crate::operations::{Door, Operations};
use crate::signing::Algorithm;

/// A request that presented the admin credential; derefs to the operations it may call.
pub struct Admin(web::Data<AppState>);

impl std::ops::Deref for Admin {
    type Target = Operations;
    fn deref(&self) -> &Operations {
        &self.0.ops
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Admin, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or(ApiError::Internal)?;
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
        Ok(Admin(state.clone()))
    } else {
        tracing::warn!("admin request with a wrong credential");
        Err(ApiError::AdminUnauthorized)
    }
}

type Answer = Result<HttpResponse, ApiError>;

fn ok(body: impl Serialize) -> Answer {
    Ok(HttpResponse::Ok().json(body))
}

fn created(body: impl Serialize) -> Answer {
    Ok(HttpResponse::Created().json(body))
}

const DOOR: Door = Door::AdminApi;

pub async fn list_clients(ops: Admin) -> Answer {
    ok(ops.list_clients())
}

pub async fn put_client(ops: Admin, spec: web::Json<ClientSpec>) -> Answer {
    created(ops.put_client(spec.into_inner(), DOOR).await?)
}

/// Removes a client; answers what its removal revoked.
pub async fn remove_client(ops: Admin, id: web::Path<String>) -> Answer {
    ok(ops.remove_client(&id, DOOR, crate::unix_now()).await?)
}

/// Revokes every token of a client; the client stays.
pub async fn revoke_client(ops: Admin, id: web::Path<String>) -> Answer {
    ok(ops.revoke_client(&id, DOOR, crate::unix_now()).await?)
}

pub async fn list_users(ops: Admin) -> Answer {
    ok(ops.list_users()?)
}

/// Creates or updates a user (a new password revokes the user's tokens).
pub async fn put_user(ops: Admin, spec: web::Json<UserSpec>) -> Answer {
    created(ops.put_user(spec.into_inner(), DOOR, crate::unix_now()).await?)
}

/// Removes a user; answers what the removal revoked.
pub async fn remove_user(ops: Admin, username: web::Path<String>) -> Answer {
    ok(ops.remove_user(&username, DOOR, crate::unix_now()).await?)
}

/// Revokes every token issued on behalf of a user; the user stays.
pub async fn revoke_user(ops: Admin, username: web::Path<String>) -> Answer {
    ok(ops.revoke_user(&username, DOOR, crate::unix_now()).await?)
}

/// Everything Tessera holds about a user, for a data-subject request.
pub async fn export_user(ops: Admin, username: web::Path<String>) -> Answer {
    let export = ops.export_user(&username, crate::unix_now()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(export))
}

#[derive(serde::Deserialize)]
pub struct RotateKey {
    alg: Option<Algorithm>,
}

/// Adds a new ID-token signing key and retires the active one; answers `{"kid": ...}`.
pub async fn rotate_key(ops: Admin, body: Option<web::Json<RotateKey>>) -> Answer {
    let alg = body.and_then(|b| b.alg).unwrap_or(Algorithm::RS256);
    ok(serde_json::json!({ "kid": ops.rotate_key(alg, DOOR, crate::unix_now()).await? }))
}
