//! The admin API, for `tessera client ...` while the server holds the data directory.
//!
//! Authenticated by the per-start credential in `<data_dir>/admin.json`, compared as a digest in
//! constant time. Not part of the OAuth surface and not advertised in discovery.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::admin::{ClientSpec, ClientView};
use crate::oauth::OAuthError;

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
