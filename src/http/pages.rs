//! The browser-facing endpoints of the code flow: `GET /oauth/authorize`, the login and consent
//! forms they lead to, and RP-initiated logout.
//!
//! Each handler parses the request, checks the session and CSRF token (`session`), asks the
//! authority, and answers with a page or a redirect. Which failures may redirect and which must
//! stay on an error page is decided by `oauth::authorize`. Pages are askama templates, escaped
//! by default; every answer carries `Cache-Control: no-store`, and pages may not be framed.

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::csp;
use super::extract::{Form, InputError};
use super::session;
use super::AppState;
use crate::authority::{LoginOutcome, SignedIn};
use crate::oauth::authorize::{error_redirect, redirect_with};
use crate::oauth::{
    AuthorizeError, AuthorizeParams, AuthorizeRequest, FormError, FromPairs, OAuthError, Pairs, Prompt,
};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    client_id: &'a str,
    username: &'a str,
    error: Option<String>,
    csrf: String,
    hidden: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_id: &'a str,
    username: &'a str,
    scopes: Vec<String>,
    csrf: String,
    hidden: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// The authorization request's parameters as hidden form fields, so the login and consent
/// forms carry the request to the next step (where it is validated again).
fn hidden_fields(p: &AuthorizeParams) -> Vec<(&'static str, String)> {
    let fields = [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
        ("nonce", &p.nonce),
        ("prompt", &p.prompt),
    ];
    fields
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
}

/// What a scope lets the client do, in words for the consent page.
fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are (your account identifier)".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "read" => "Read your data".into(),
        "write" => "Change your data".into(),
        "offline_access" => "Keep access while you are away".into(),
        other => format!("Use the “{other}” permission"),
    }
}

fn page(status: StatusCode, html: Result<String, askama::Error>, cookies: Vec<Cookie<'static>>) -> HttpResponse {
    let Ok(html) = html else {
        tracing::error!("rendering a page failed");
        return HttpResponse::InternalServerError().finish();
    };
    let mut res = HttpResponse::build(status);
    secure_headers(&mut res);
    for c in cookies {
        res.cookie(c);
    }
    res.content_type("text/html; charset=utf-8").body(html)
}

fn secure_headers(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp::policy()));
}

/// A page whose form leads on to `target` (a validated redirect URI): its CSP lets the form's
/// redirect reach that origin (`csp`).
fn form_leading_to(mut res: HttpResponse, target: &str) -> HttpResponse {
    if let Ok(v) = header::HeaderValue::from_str(&csp::policy_for_form_to(target)) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

pub(super) fn message(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(status, MessagePage { title, message }.render(), vec![])
}

/// The per-address limit of a browser-facing endpoint: `Some` is the 429 page to answer with
/// (with `Retry-After`), counted for `endpoint`.
fn address_refusal(state: &AppState, req: &HttpRequest, endpoint: &'static str) -> Option<HttpResponse> {
    let addr = super::client_address(req, state.authority.limits().trusted_proxies());
    let limited = state.authority.limits().check_address(addr).err()?;
    state.authority.limits().refused(endpoint, &limited);
    let mut res = message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "Too many sign-in requests came from your network. Wait a moment and try again.",
    );
    if let Ok(v) = header::HeaderValue::from_str(&limited.retry_after_secs().to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(res)
}

/// The page for refused input (`http::extract`): its status, in words.
pub(super) fn input_error(e: &InputError) -> HttpResponse {
    let text = match e {
        InputError::QueryTooLong => "The address of this request is too long.",
        InputError::HeadersTooLarge => "The request carries too many or too large headers.",
        InputError::BodyTooLarge => "The form sent is too large.",
        InputError::BodyTimeout => "The form did not arrive in time. Please try again.",
        InputError::ContentType | InputError::Read | InputError::Form(_) | InputError::Json => {
            return bad_form();
        }
    };
    message(e.status(), "This request cannot be handled", text)
}

/// `303 See Other` to `location` (after a POST, the browser follows with a GET).
fn see_other(location: &str, cookies: Vec<Cookie<'static>>) -> HttpResponse {
    let mut res = HttpResponse::SeeOther();
    secure_headers(&mut res);
    for c in cookies {
        res.cookie(c);
    }
    res.insert_header((header::LOCATION, location)).finish()
}

/// An error page, or the error redirect with `iss` (RFC 9207 §2: on error responses too).
fn authorize_error(app: &AppState, e: AuthorizeError) -> HttpResponse {
    match e {
        AuthorizeError::Page(why) => message(StatusCode::BAD_REQUEST, "This sign-in link is not valid", why),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            state,
        } => see_other(
            &error_redirect(&redirect_uri, &error, state.as_deref(), app.authority.issuer()),
            vec![],
        ),
    }
}

fn internal_error() -> HttpResponse {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not complete the request. Please try again.",
    )
}

fn validated(state: &AppState, params: &AuthorizeParams) -> Result<AuthorizeRequest, AuthorizeError> {
    let client = params
        .client_id
        .as_deref()
        .and_then(|id| state.authority.clients().get(id));
    params.validate(client.as_deref())
}

fn login_page(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    params: &AuthorizeParams,
    request: &AuthorizeRequest,
    username: &str,
    error: Option<String>,
) -> HttpResponse {
    let (seed, cookie) = session::csrf_seed(req, state.secure_cookies());
    let html = LoginPage {
        client_id: &request.client_id,
        username,
        error,
        csrf: session::csrf_token(state.authority.key(), &seed),
        hidden: hidden_fields(params),
    }
    .render();
    // Signing in may end in the redirect to the client when no consent is needed.
    form_leading_to(page(status, html, cookie.into_iter().collect()), &request.redirect_uri)
}

/// The signed-in user of this browser, if its session cookie is intact and unexpired and the
/// user still exists with the password the session was opened with.
fn signed_in(state: &AppState, req: &HttpRequest, now: u64) -> Option<SignedIn> {
    let user = session::current_user(req, state.authority.key(), now, state.secure_cookies())?;
    match state.authority.session_valid(&user) {
        Ok(true) => Some(user),
        Ok(false) => None,
        Err(e) => {
            tracing::error!(error = %e, "checking a session failed");
            None
        }
    }
}

/// `GET /oauth/authorize`.
pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = address_refusal(&state, &req, super::routes::AUTHORIZE) {
        return refused;
    }
    // The query's length was bounded before routing (`extract::head_refusal`, in `http::edge`).
    let Ok(params) = AuthorizeParams::parse_form(req.query_string().as_bytes()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The authorization request is malformed or repeats a parameter.",
        );
    };
    let now = crate::unix_now();
    let request = match validated(&state, &params) {
        Ok(r) => r,
        Err(e) => return authorize_error(&state, e),
    };
    let user = signed_in(&state, &req, now).filter(|_| request.prompt != Prompt::Login);
    let Some(user) = user else {
        if request.prompt == Prompt::None {
            return authorize_error(&state, redirect_error(&request, OAuthError::LoginRequired));
        }
        return login_page(&state, &req, StatusCode::OK, &params, &request, "", None);
    };
    let needs_consent = match state
        .authority
        .needs_consent(&user.username, &request.client_id, &request.scope)
    {
        Ok(needs) => needs || request.prompt == Prompt::Consent,
        Err(e) => {
            tracing::error!(error = %e, "reading a consent failed");
            return internal_error();
        }
    };
    if !needs_consent {
        return code_redirect(&state, &request, &user, now).await;
    }
    if request.prompt == Prompt::None {
        return authorize_error(&state, redirect_error(&request, OAuthError::ConsentRequired));
    }
    let (seed, cookie) = session::csrf_seed(&req, state.secure_cookies());
    let html = ConsentPage {
        client_id: &request.client_id,
        username: &user.username,
        scopes: request.scope.tokens().iter().map(|s| describe_scope(s)).collect(),
        csrf: session::csrf_token(state.authority.key(), &seed),
        hidden: hidden_fields(&params),
    }
    .render();
    form_leading_to(
        page(StatusCode::OK, html, cookie.into_iter().collect()),
        &request.redirect_uri,
    )
}

fn redirect_error(request: &AuthorizeRequest, error: OAuthError) -> AuthorizeError {
    AuthorizeError::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        error,
        state: request.state.clone(),
    }
}

/// Issues a code and sends the browser back to the client with it, `state` and `iss`
/// (RFC 9207, so a client talking to several servers can tell which one answered).
async fn code_redirect(state: &AppState, request: &AuthorizeRequest, user: &SignedIn, now: u64) -> HttpResponse {
    match state.authority.issue_code(request, user, now).await {
        Ok(code) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = &request.state {
                params.push(("state", s));
            }
            params.push(("iss", state.authority.issuer()));
            see_other(&redirect_with(&request.redirect_uri, &params), vec![])
        }
        Err(e) => {
            tracing::error!(error = %e, "issuing an authorization code failed");
            internal_error()
        }
    }
}

pub struct LoginForm {
    csrf: Option<String>,
    username: Option<String>,
    password: Option<String>,
    params: AuthorizeParams,
}

impl FromPairs for LoginForm {
    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(LoginForm {
            csrf: p.owned("csrf")?,
            username: p.owned("username")?,
            password: p.owned("password")?,
            params: AuthorizeParams::from_pairs(p)?,
        })
    }
}

fn expired_form() -> HttpResponse {
    message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "Go back, reload the page and try again.",
    )
}

fn bad_form() -> HttpResponse {
    message(
        StatusCode::BAD_REQUEST,
        "This form is not valid",
        "The form was malformed. Go back, reload the page and try again.",
    )
}

/// What every form post checks first: the CSRF token, then the authorization request the form
/// carries, validated again (the client may have changed since the page was shown). `Err` is
/// the answer to send instead.
fn checked(
    state: &AppState,
    req: &HttpRequest,
    csrf: Option<&str>,
    params: &AuthorizeParams,
) -> Result<AuthorizeRequest, Box<HttpResponse>> {
    if !session::csrf_ok(req, state.authority.key(), csrf, state.secure_cookies()) {
        return Err(Box::new(expired_form()));
    }
    validated(state, params).map_err(|e| Box::new(authorize_error(state, e)))
}

/// `POST /oauth/login`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form<LoginForm>, InputError>,
) -> HttpResponse {
    if let Some(refused) = address_refusal(&state, &req, super::routes::LOGIN) {
        return refused;
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return input_error(&e),
    };
    let request = match checked(&state, &req, form.csrf.as_deref(), &form.params) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let username = form.username.as_deref().unwrap_or("").trim();
    let password = form.password.as_deref().unwrap_or("");
    if username.is_empty() || password.is_empty() || username.len() > 256 || password.len() > 1024 {
        let error = Some("Enter your username and password.".to_owned());
        return login_page(
            &state,
            &req,
            StatusCode::BAD_REQUEST,
            &form.params,
            &request,
            username,
            error,
        );
    }
    let now = crate::unix_now();
    let addr = super::client_address(&req, state.authority.limits().trusted_proxies());
    // The login page again, with why, and when to retry if the answer is 429.
    let refuse = |status, error: &str, retry_after: Option<u64>| {
        let mut res = login_page(
            &state,
            &req,
            status,
            &form.params,
            &request,
            username,
            Some(error.to_owned()),
        );
        if let Some(v) = retry_after.and_then(|s| header::HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    };
    match state.authority.sign_in(username, password, addr, now).await {
        Ok(LoginOutcome::SignedIn(user)) => {
            let cookie = session::session_cookie(
                state.authority.key(),
                &user,
                now + state.session_ttl,
                state.secure_cookies(),
            );
            let mut params = form.params;
            // The password was just asked: going back to the request must not ask again.
            if params.prompt.as_deref() == Some("login") {
                params.prompt = None;
            }
            let query = serde_urlencoded::to_string(&params).expect("string fields always encode");
            see_other(&format!("/oauth/authorize?{query}"), vec![cookie])
        }
        Ok(LoginOutcome::Failed) => refuse(StatusCode::UNAUTHORIZED, "The username or password is incorrect.", None),
        Ok(LoginOutcome::Locked { retry_after }) => {
            let minutes = retry_after.div_ceil(60).max(1);
            let plural = if minutes == 1 { "" } else { "s" };
            let error = format!("Too many failed sign-ins. Try again in {minutes} minute{plural}.");
            refuse(StatusCode::TOO_MANY_REQUESTS, &error, Some(retry_after))
        }
        Ok(LoginOutcome::Busy { retry_after }) => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins at the moment. Try again in a few seconds.",
            Some(retry_after),
        ),
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed on the server side");
            internal_error()
        }
    }
}

pub struct ConsentForm {
    csrf: Option<String>,
    decision: Option<String>,
    params: AuthorizeParams,
}

impl FromPairs for ConsentForm {
    fn from_pairs(p: &Pairs<'_>) -> Result<Self, FormError> {
        Ok(ConsentForm {
            csrf: p.owned("csrf")?,
            decision: p.owned("decision")?,
            params: AuthorizeParams::from_pairs(p)?,
        })
    }
}

/// `POST /oauth/consent`.
pub async fn consent(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form<ConsentForm>, InputError>,
) -> HttpResponse {
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return input_error(&e),
    };
    let request = match checked(&state, &req, form.csrf.as_deref(), &form.params) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let now = crate::unix_now();
    let Some(user) = signed_in(&state, &req, now) else {
        // The session ended while the page was open: start the request again.
        let query = serde_urlencoded::to_string(&form.params).expect("string fields always encode");
        return see_other(&format!("/oauth/authorize?{query}"), vec![]);
    };
    match form.decision.as_deref() {
        Some("allow") => {
            if let Err(e) = state
                .authority
                .remember_consent(&user.username, &request.client_id, &request.scope, now)
            {
                tracing::error!(error = %e, "storing a consent failed");
                return internal_error();
            }
            code_redirect(&state, &request, &user, now).await
        }
        Some("deny") => authorize_error(&state, redirect_error(&request, OAuthError::AccessDenied)),
        _ => bad_form(),
    }
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    client_id: Option<&'a str>,
    username: &'a str,
    csrf: String,
    hidden: Vec<(&'static str, String)>,
}

#[derive(Deserialize)]
pub struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// The confirmation form's fields: the request, resolved to its client, without the hint.
#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

fn logout_failed(why: &str) -> HttpResponse {
    message(StatusCode::BAD_REQUEST, "Sign-out failed", why)
}

/// Where to send the browser after signing out: `None` for nowhere (a page says it is done);
/// else `(uri, location)`, the registered `post_logout_redirect_uri` and it with `state`. `Err`
/// when the URI is not registered, by exact match, for `client_id`.
fn return_address(
    state: &AppState,
    client_id: Option<&str>,
    uri: Option<String>,
    st: Option<&str>,
) -> Result<Option<(String, String)>, Box<HttpResponse>> {
    let Some(uri) = uri else {
        return Ok(None);
    };
    let registered = client_id
        .and_then(|id| state.authority.clients().get(id))
        .is_some_and(|c| c.post_logout_redirect_uris.contains(&uri));
    if !registered {
        return Err(Box::new(logout_failed(
            "The address to return to is not registered for this client.",
        )));
    }
    let location = match st {
        Some(s) => redirect_with(&uri, &[("state", s)]),
        None => uri.clone(),
    };
    Ok(Some((uri, location)))
}

/// Ends the session (clears its cookie) and goes to `target`, or says it is done.
fn signed_out(state: &AppState, target: Option<(String, String)>) -> HttpResponse {
    let cleared = session::cleared_session(state.secure_cookies());
    match target {
        Some((_, location)) => see_other(&location, vec![cleared]),
        None => page(
            StatusCode::OK,
            MessagePage {
                title: "You are signed out",
                message: "You can close this window.",
            }
            .render(),
            vec![cleared],
        ),
    }
}

/// `GET /oauth/logout` (OpenID Connect RP-Initiated Logout 1.0 §2). Ends the browser's session.
/// A `post_logout_redirect_uri` is followed only if it is registered, by exact match, for the
/// client named by the ID token hint (or by `client_id`, which must then agree with it).
///
/// The session ends at once only when a valid `id_token_hint` names its user, or when there is
/// no session. Otherwise anyone could sign the user out with a link, so the user is asked first
/// (§3): a page whose form (with a CSRF token) posts to `POST /oauth/logout`.
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Ok(p) = serde_urlencoded::from_str::<LogoutParams>(req.query_string()) else {
        return logout_failed("The sign-out request is malformed.");
    };
    let hint = match p.id_token_hint.as_deref() {
        Some(hint) => match state.authority.verify_id_token(hint) {
            Some(claims) => Some(claims),
            None => return logout_failed("The ID token hint was not issued by this server."),
        },
        None => None,
    };
    let claim = |name: &str| {
        hint.as_ref()
            .and_then(|c| c.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let (hinted_client, hinted_sub) = (claim("aud"), claim("sub"));
    let client_id = match (hinted_client, p.client_id) {
        (Some(a), Some(b)) if a != b => return logout_failed("The client does not match the ID token hint."),
        (a, b) => a.or(b),
    };
    let target = match return_address(
        &state,
        client_id.as_deref(),
        p.post_logout_redirect_uri,
        p.state.as_deref(),
    ) {
        Ok(t) => t,
        Err(answer) => return *answer,
    };
    let Some(user) = signed_in(&state, &req, crate::unix_now()) else {
        return signed_out(&state, target);
    };
    if hinted_sub.as_deref() == Some(user.sub.as_str()) {
        return signed_out(&state, target);
    }
    let (seed, cookie) = session::csrf_seed(&req, state.secure_cookies());
    let mut hidden = Vec::new();
    if let Some(id) = &client_id {
        hidden.push(("client_id", id.clone()));
    }
    if let Some((uri, _)) = &target {
        hidden.push(("post_logout_redirect_uri", uri.clone()));
    }
    if let Some(s) = p.state {
        hidden.push(("state", s));
    }
    let html = LogoutPage {
        client_id: client_id.as_deref(),
        username: &user.username,
        csrf: session::csrf_token(state.authority.key(), &seed),
        hidden,
    }
    .render();
    let res = page(StatusCode::OK, html, cookie.into_iter().collect());
    match &target {
        Some((uri, _)) => form_leading_to(res, uri),
        None => res,
    }
}

/// `POST /oauth/logout`: the confirmation form. Checks the CSRF token and the return address
/// again, then ends the session.
pub async fn confirm_logout(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Ok(form) = serde_urlencoded::from_bytes::<LogoutForm>(&body) else {
        return bad_form();
    };
    if !session::csrf_ok(
        &req,
        state.authority.key(),
        form.csrf.as_deref(),
        state.secure_cookies(),
    ) {
        return expired_form();
    }
    match return_address(
        &state,
        form.client_id.as_deref(),
        form.post_logout_redirect_uri,
        form.state.as_deref(),
    ) {
        Ok(target) => signed_out(&state, target),
        Err(answer) => *answer,
    }
}
