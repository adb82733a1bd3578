//! The demo client's routes. Each handler reads the request, checks the session (and, for a
//! POST, its CSRF token), makes at most the back-channel calls its button names, records the
//! outcome in the session and redirects home (post/redirect/get), where the page shows it.
//!
//! Guarantees: bad input (garbled query or form, unknown or expired session, forged or missing
//! CSRF token, wrong `state`) gets a 400 page and changes nothing, and a wrong `state` is refused
//! before anything is sent to Tessera; a failing Tessera or API is reported on the page, never
//! as a 500; nothing sensitive is logged (no token, code, verifier, state or secret).

use std::time::Instant;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::backchannel::{ApiEndpoint, BackchannelError};
use super::pages::{ErrorPage, IndexPage};
use super::protocol::{
    authorize_url, body_for_display, clip, logout_url, pkce_challenge, random_secret, same_secret, AuthorizeRequest,
    TokenReply,
};
use super::session::{ApiCall, PendingLogin, RefreshRefused, Tokens};
use super::AppState;

/// The session cookie's name; its value is the session id and nothing else.
pub const SESSION_COOKIE: &str = "demo_session";

pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let now = Instant::now();
    let page = session_id(&req)
        .and_then(|id| state.sessions.with(&id, now, |s| IndexPage::for_session(Some(s), now)))
        .unwrap_or_else(|| IndexPage::for_session(None, now));
    html(StatusCode::OK, page.render())
}

/// Starts the code flow: fresh `state`, `nonce` and PKCE verifier in the session, then off to
/// Tessera.
pub async fn login(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let now = Instant::now();
    let pending = PendingLogin {
        state: random_secret(),
        nonce: random_secret(),
        verifier: random_secret(),
    };
    let location = authorize_url(
        &state.config.tessera_url,
        &AuthorizeRequest {
            client_id: &state.config.client_id,
            redirect_uri: &state.config.redirect_uri,
            scope: &state.config.scope,
            state: &pending.state,
            nonce: &pending.nonce,
            code_challenge: &pkce_challenge(&pending.verifier),
        },
    );
    let known = session_id(&req).filter(|id| state.sessions.with(id, now, |_| ()).is_some());
    let (id, cookie) = match known {
        Some(id) => (id, None),
        None => {
            let id = state.sessions.create(now);
            (id.clone(), Some(session_cookie(&state, id)))
        }
    };
    state.sessions.with(&id, now, |s| s.pending = Some(pending));
    tracing::info!("sign-in started, redirecting to Tessera");
    see_other(&location, cookie)
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Tessera's reply to the authorization request (the `iss` parameter is ignored: this client
/// knows a single authorization server, so there is no mix-up to detect).
pub async fn callback(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let now = Instant::now();
    let Ok(web::Query(params)) = web::Query::<CallbackParams>::from_query(req.query_string()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in reply is malformed.",
        );
    };
    let Some(id) = session_id(&req) else {
        return no_sign_in_in_progress();
    };
    // Taken whatever happens next: a pending sign-in answers one callback only.
    let Some(pending) = state.sessions.with(&id, now, |s| s.pending.take()).flatten() else {
        return no_sign_in_in_progress();
    };
    let state_matches = params.state.as_deref().is_some_and(|s| same_secret(s, &pending.state));
    if !state_matches {
        tracing::warn!("callback refused: state does not match the session's sign-in");
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "The reply's state does not match the sign-in this browser started, so it was refused \
             without contacting Tessera. Start again from the home page.",
        );
    }
    if let Some(error) = params.error {
        let message = match params.error_description {
            Some(d) => format!("Tessera did not sign you in: {}: {}", clip(&error), clip(&d)),
            None => format!("Tessera did not sign you in: {}", clip(&error)),
        };
        tracing::info!(error = %clip(&error), "sign-in ended with an error reply");
        state.sessions.with(&id, now, |s| s.flash_error = Some(message));
        return see_other("/", None);
    }
    let Some(code) = params.code.filter(|c| !c.is_empty()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in reply has neither a code nor an error.",
        );
    };

    let exchanged = state
        .backchannel
        .exchange_code(&code, &state.config.redirect_uri, &pending.verifier)
        .await;
    let now = Instant::now();
    match exchanged {
        Ok(reply) => {
            let requested = state.config.scope.clone();
            state.sessions.with(&id, now, |s| {
                s.tokens = Some(tokens_from_reply(reply, None, &requested, now));
                s.last_call = None;
                s.flash_notice = Some("Signed in.".into());
            });
            tracing::info!("sign-in completed");
            // A new id once signed in, so an id known before the sign-in is worth nothing after.
            let cookie = state.sessions.rotate(&id, now).map(|new| session_cookie(&state, new));
            see_other("/", cookie)
        }
        Err(e) => {
            tracing::warn!(error = %e, "code exchange failed");
            state
                .sessions
                .with(&id, now, |s| s.flash_error = Some(format!("Signing in failed. {e}")));
            see_other("/", None)
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
pub struct CallForm {
    csrf: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    bio: Option<String>,
}

/// One of the API buttons: calls the endpoint with the access token and keeps what came back.
pub async fn call(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    form: web::Form<CallForm>,
) -> HttpResponse {
    let Some(endpoint) = ApiEndpoint::from_name(&name) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such API button.");
    };
    let id = match checked_session(&state, &req, &form.csrf) {
        Ok(id) => id,
        Err(why) => return refused(why),
    };
    let Some(access_token) = held_tokens(&state, &id).map(|t| t.access_token) else {
        return flash_error_home(&state, &id, "Sign in first: there is no access token to send.");
    };
    let body = (endpoint == ApiEndpoint::Update)
        .then(|| super::backchannel::update_body(form.display_name.as_deref(), form.bio.as_deref()));
    let result = state.backchannel.call_api(endpoint, &access_token, body).await;
    let mut call = ApiCall {
        method: endpoint.method(),
        path: endpoint.path(),
        status: None,
        www_authenticate: None,
        body: String::new(),
    };
    let error = match result {
        Ok(reply) => {
            tracing::info!(path = endpoint.path(), status = reply.status, "API call answered");
            call.status = Some(reply.status);
            call.www_authenticate = reply.www_authenticate;
            call.body = body_for_display(&reply.body);
            None
        }
        Err(e) => {
            tracing::warn!(path = endpoint.path(), error = %e, "API call failed");
            Some(e.to_string())
        }
    };
    state.sessions.with(&id, Instant::now(), |s| {
        s.last_call = Some(call);
        s.flash_error = error;
    });
    see_other("/", None)
}

/// Uses the refresh token; Tessera rotates it, and the new one replaces the old.
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest, form: web::Form<CsrfForm>) -> HttpResponse {
    let id = match checked_session(&state, &req, &form.csrf) {
        Ok(id) => id,
        Err(why) => return refused(why),
    };
    let started = state
        .sessions
        .with(&id, Instant::now(), |s| s.begin_refresh(Instant::now()));
    let old = match started {
        Some(Ok(token)) => token,
        Some(Err(RefreshRefused::UnderWay)) => {
            return flash_error_home(&state, &id, "A refresh is already under way; this one was not sent.")
        }
        Some(Err(RefreshRefused::NoRefreshToken)) | None => {
            return flash_error_home(
                &state,
                &id,
                "There is no refresh token to use (sign in with the offline_access scope to get one).",
            )
        }
    };
    let result = state.backchannel.refresh(&old).await;
    let now = Instant::now();
    let requested = state.config.scope.clone();
    state.sessions.with(&id, now, |s| {
        s.end_refresh();
        match result {
            Ok(reply) => {
                let tokens = tokens_from_reply(reply, s.tokens.as_ref(), &requested, now);
                let rotated = tokens.refresh_token.as_deref() != Some(old.as_str());
                s.flash_notice = Some(if rotated {
                    "Tokens refreshed: a new access token, and the refresh token rotated.".into()
                } else {
                    "Tokens refreshed: a new access token; Tessera kept the same refresh token.".into()
                });
                s.tokens = Some(tokens);
                tracing::info!(rotated, "tokens refreshed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh failed");
                s.flash_error = Some(format!("Refreshing failed. {e}"));
            }
        }
    });
    see_other("/", None)
}

/// Revokes the refresh token, then the access token, at Tessera. The tokens stay in the session,
/// marked revoked, so the next API call shows the API refusing the access token.
pub async fn revoke(state: web::Data<AppState>, req: HttpRequest, form: web::Form<CsrfForm>) -> HttpResponse {
    let id = match checked_session(&state, &req, &form.csrf) {
        Ok(id) => id,
        Err(why) => return refused(why),
    };
    let Some(tokens) = held_tokens(&state, &id) else {
        return flash_error_home(&state, &id, "There are no tokens to revoke.");
    };
    // The refresh token first: it is the long-lived one, and revoking it also ends its family.
    let mut outcome: Result<(), BackchannelError> = Ok(());
    if let Some(refresh_token) = &tokens.refresh_token {
        outcome = state.backchannel.revoke(refresh_token, "refresh_token").await;
    }
    if outcome.is_ok() {
        outcome = state.backchannel.revoke(&tokens.access_token, "access_token").await;
    }
    state.sessions.with(&id, Instant::now(), |s| match outcome {
        Ok(()) => {
            if let Some(held) = s.tokens.as_mut() {
                held.revoked = true;
            }
            s.flash_notice = Some(
                "Tokens revoked at Tessera. This client keeps the access token so that calling the API \
                 shows it being refused; sign out or sign in again to start over."
                    .into(),
            );
            tracing::info!("tokens revoked");
        }
        Err(e) => {
            tracing::warn!(error = %e, "revocation failed");
            s.flash_error = Some(format!("Revoking failed. {e}"));
        }
    });
    see_other("/", None)
}

/// Forgets the session, then, when there is an ID token, ends the Tessera session too
/// (RP-initiated logout) and comes back to the home page.
pub async fn logout(state: web::Data<AppState>, req: HttpRequest, form: web::Form<CsrfForm>) -> HttpResponse {
    let id = match checked_session(&state, &req, &form.csrf) {
        Ok(id) => id,
        Err(why) => return refused(why),
    };
    let id_token = state
        .sessions
        .remove(&id)
        .and_then(|s| s.tokens)
        .and_then(|t| t.id_token);
    let mut removal = session_cookie(&state, String::new());
    removal.make_removal();
    tracing::info!(at_tessera = id_token.is_some(), "signed out");
    match id_token {
        Some(hint) => see_other(
            &logout_url(
                &state.config.tessera_url,
                &hint,
                &state.config.client_id,
                &state.home_url,
            ),
            Some(removal),
        ),
        None => see_other("/", Some(removal)),
    }
}

pub async fn not_found() -> HttpResponse {
    error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

/// The page for a form the extractor could not read (missing CSRF token, wrong content type,
/// too large): a 400 that changes nothing.
pub fn bad_form(err: actix_web::error::UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    tracing::info!(error = %err, "form refused");
    let response = error_page(
        StatusCode::BAD_REQUEST,
        "Request refused",
        "The form is missing its CSRF token or cannot be read. Reload the home page and try again.",
    );
    actix_web::error::InternalError::from_response(err, response).into()
}

/// The tokens a session holds, if any (copied out so no lock is held across a network call).
fn held_tokens(state: &AppState, id: &str) -> Option<Tokens> {
    state.sessions.with(id, Instant::now(), |s| s.tokens.clone()).flatten()
}

/// The request's session id, if the session exists and the form's CSRF token is its own;
/// otherwise why the request is refused.
fn checked_session(state: &AppState, req: &HttpRequest, csrf: &str) -> Result<String, &'static str> {
    let Some(id) = session_id(req) else {
        return Err(
            "This browser has no session with the demo client (it may have expired). Start again from the home page.",
        );
    };
    match state.sessions.with(&id, Instant::now(), |s| same_secret(csrf, &s.csrf)) {
        Some(true) => Ok(id),
        Some(false) => {
            tracing::warn!("form refused: CSRF token does not match the session");
            Err("The form's CSRF token does not match this session. Reload the home page and try again.")
        }
        None => Err("Your session with the demo client has expired. Start again from the home page."),
    }
}

fn refused(why: &str) -> HttpResponse {
    error_page(StatusCode::BAD_REQUEST, "Request refused", why)
}

/// The tokens to hold after a token reply. A reply may leave out what did not change (RFC 6749
/// §5.1 and §6): without a refresh token the old one stays usable, without an ID token the old
/// one is still the logout hint, and without a scope the scope is as before (or as requested).
pub fn tokens_from_reply(reply: TokenReply, previous: Option<&Tokens>, requested_scope: &str, now: Instant) -> Tokens {
    Tokens {
        access_token: reply.access_token,
        token_type: reply.token_type,
        refresh_token: reply
            .refresh_token
            .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        id_token: reply.id_token.or_else(|| previous.and_then(|p| p.id_token.clone())),
        scope: reply
            .scope
            .or_else(|| previous.map(|p| p.scope.clone()))
            .unwrap_or_else(|| requested_scope.to_owned()),
        expires_in: reply.expires_in,
        obtained_at: now,
        revoked: false,
    }
}

fn session_id(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

fn session_cookie(state: &AppState, id: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, id)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .finish()
}

fn no_sign_in_in_progress() -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        "No sign-in is in progress in this browser (it may have expired or already finished). \
         Start again from the home page.",
    )
}

fn flash_error_home(state: &AppState, id: &str, message: &str) -> HttpResponse {
    state
        .sessions
        .with(id, Instant::now(), |s| s.flash_error = Some(message.to_owned()));
    see_other("/", None)
}

fn see_other(location: &str, cookie: Option<Cookie<'static>>) -> HttpResponse {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location));
    if let Some(cookie) = cookie {
        response.cookie(cookie);
    }
    response.finish()
}

fn error_page(status: StatusCode, title: &str, error: &str) -> HttpResponse {
    html(status, ErrorPage { title, error }.render())
}

fn html(status: StatusCode, rendered: askama::Result<String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be rendered.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(refresh: Option<&str>, id_token: Option<&str>, scope: Option<&str>) -> TokenReply {
        TokenReply {
            access_token: "at-2".into(),
            token_type: "Bearer".into(),
            expires_in: Some(60),
            scope: scope.map(Into::into),
            refresh_token: refresh.map(Into::into),
            id_token: id_token.map(Into::into),
        }
    }

    #[test]
    fn a_rotated_refresh_token_replaces_the_old_one() {
        let now = Instant::now();
        let first = tokens_from_reply(reply(Some("rt-1"), Some("id-1"), Some("openid read")), None, "x", now);
        let second = tokens_from_reply(reply(Some("rt-2"), None, None), Some(&first), "x", now);
        assert_eq!(second.refresh_token.as_deref(), Some("rt-2"));
        assert_eq!(second.access_token, "at-2");
        assert_eq!(second.id_token.as_deref(), Some("id-1"), "kept for the logout hint");
        assert_eq!(second.scope, "openid read", "unchanged when the reply leaves it out");
        assert!(!second.revoked);
    }

    #[test]
    fn a_reply_without_refresh_token_or_scope_keeps_or_defaults_them() {
        let now = Instant::now();
        let first = tokens_from_reply(reply(None, None, None), None, "openid profile", now);
        assert_eq!(first.scope, "openid profile");
        assert_eq!(first.refresh_token, None);
        let previous = Tokens {
            refresh_token: Some("rt-1".into()),
            revoked: true,
            ..first
        };
        let next = tokens_from_reply(reply(None, None, Some("read")), Some(&previous), "openid", now);
        assert_eq!(next.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(next.scope, "read");
        assert!(!next.revoked, "fresh tokens are not revoked");
    }
}
