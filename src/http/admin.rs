//! The admin API, for `tessera client|user|keys ...` while the server holds the data directory.
//!
//! Authenticated by the per-start credential in `<data_dir>/admin.json`, compared as a digest in
//! constant time. Not part of the OAuth surface and not advertised in discovery.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::admin::{ClientSpec, ClientView, UserSpec, UserView};
use crate::oauth::OAuthError;
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
    let views: Vec<ClientView> = state
        .authority
        .clients()
        .list()
        .iter()
        .map(|c| ClientView::from(&**c))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn put_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    spec: web::Json<ClientSpec>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let record = spec
        .into_inner()
        .into_record(state.authority.key())
        .map_err(|e| OAuthError::InvalidRequest(e.into()))?;
    let view = ClientView::from(&record);
    state.authority.clients().upsert(record).map_err(|e| {
        tracing::error!(error = %e, "storing a client failed");
        ApiError::Internal
    })?;
    tracing::info!(client_id = %view.client_id, "client registered through the admin API");
    Ok(HttpResponse::Created().json(view))
}

pub async fn remove_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let existed = state.authority.clients().remove(&id).map_err(|e| {
        tracing::error!(error = %e, "removing a client failed");
        ApiError::Internal
    })?;
    if existed {
        tracing::info!(client_id = %id, "client removed through the admin API");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

fn internal(what: &'static str) -> impl FnOnce(crate::store::StoreError) -> ApiError {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        ApiError::Internal
    }
}

pub async fn list_users(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let users = state.authority.users().list().map_err(internal("listing users"))?;
    let views: Vec<UserView> = users.iter().map(UserView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Creates or updates a user. Hashing the password takes tens of milliseconds of CPU, so it runs
/// on the blocking pool, not on the HTTP worker.
pub async fn put_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    spec: web::Json<UserSpec>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let users = state.authority.users().clone();
    let spec = spec.into_inner();
    let existing = users.get(&spec.username).map_err(internal("reading a user"))?;
    let record = web::block(move || spec.into_record(existing.as_ref()))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| OAuthError::InvalidRequest(e.into()))?;
    users.upsert(&record).map_err(internal("storing a user"))?;
    tracing::info!(username = ?record.username, "user saved through the admin API");
    Ok(HttpResponse::Created().json(UserView::from(&record)))
}

pub async fn remove_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, &req)?;
    let existed = state
        .authority
        .users()
        .remove(&username)
        .map_err(internal("removing a user"))?;
    if existed {
        tracing::info!(username = ?username.as_str(), "user removed through the admin API");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
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
    let authority = state.authority.clone();
    let kid = web::block(move || authority.rotate_signing_key(alg, crate::unix_now()))
        .await
        .map_err(|_| ApiError::Internal)??;
    tracing::info!(kid = %kid, "signing key rotated through the admin API");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "kid": kid })))
}
