//! Bounded input: the one reader of request bodies, and the bounds on a request's head.
//!
//! Guarantees:
//! - every body is read through [`Form`]: at most `max_body_bytes` (a larger `Content-Length`
//!   is refused before a byte is read; a body that grows past it is refused when it does),
//!   within `body_timeout` of the first read (a trickling client is answered 408, not waited
//!   on), as `application/x-www-form-urlencoded` when it is not empty, parsed by
//!   `oauth::form` (bounded parameters, no repeats);
//! - [`head_refusal`] refuses, before routing, a query string over `max_query_bytes` (414) and a
//!   head with more than [`MAX_HEADER_COUNT`] headers or [`MAX_HEADER_BYTES`] bytes of them
//!   (431). actix-http refuses on its own a head over 128 KiB or with more than 96 headers
//!   (431), and `client_request_timeout` bounds the time a head may take (src/server.rs);
//! - refusals are [`InputError`]s. The OAuth endpoints answer them as RFC 6749 JSON
//!   (`http::error`), the browser endpoints with an error page (`http::pages`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::http::{header, StatusCode};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest, ResponseError};
use futures_util::StreamExt as _;

use super::routes;
use crate::oauth::{FormError, FromPairs};

/// Most headers a request may carry. Browsers send about fifteen, API clients fewer.
pub const MAX_HEADER_COUNT: usize = 64;
/// Most bytes of header names and values together. The largest legitimate header here is a
/// session cookie (well under 1 KiB) or a Basic credential; 16 KiB is what common proxies allow.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The bounds on what a request may send, registered as app data by `http::configure`.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    pub max_body_bytes: usize,
    pub max_query_bytes: usize,
    /// How long a body may take to arrive, from the handler's first read.
    pub body_timeout: Duration,
}

impl InputLimits {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        InputLimits {
            max_body_bytes: s.max_body_bytes,
            max_query_bytes: s.max_query_bytes,
            body_timeout: s.request_timeout,
        }
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_body_bytes: 16 * 1024,
            max_query_bytes: 8 * 1024,
            body_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a request's input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    BodyTooLarge,
    /// The body did not arrive within the body deadline.
    BodyTimeout,
    /// A non-empty body that is not `application/x-www-form-urlencoded`.
    ContentType,
    /// The connection failed or the body was malformed on the wire.
    Read,
    Form(FormError),
    /// A JSON body that is not the expected object.
    Json,
    QueryTooLong,
    HeadersTooLarge,
}

impl InputError {
    pub fn status(&self) -> StatusCode {
        match self {
            InputError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            InputError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            InputError::QueryTooLong => StatusCode::URI_TOO_LONG,
            InputError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            InputError::ContentType | InputError::Read | InputError::Form(_) | InputError::Json => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// Words for the client (the JSON `error_description`, the error page's text).
    pub fn description(&self) -> &'static str {
        match self {
            InputError::BodyTooLarge => "request body too large",
            InputError::BodyTimeout => "the request body did not arrive in time",
            InputError::ContentType => "the body must be application/x-www-form-urlencoded",
            InputError::Read => "the request body could not be read",
            InputError::Form(FormError::TooManyParams) => "the request has too many parameters",
            InputError::Form(FormError::Repeated(_)) => "the request repeats a parameter",
            InputError::Form(FormError::NotUtf8) => "the request is not valid UTF-8",
            InputError::Json => "the JSON body is not the expected object",
            InputError::QueryTooLong => "the query string is too long",
            InputError::HeadersTooLarge => "the request headers are too large",
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

impl From<FormError> for InputError {
    fn from(e: FormError) -> Self {
        InputError::Form(e)
    }
}

/// By default an `InputError` is an OAuth endpoint's refusal: JSON, mapped in `http::error`.
/// Browser handlers take `Result<Form<T>, InputError>` and answer with a page instead.
impl ResponseError for InputError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        super::error::ApiError::Input(self.clone()).error_response()
    }
}

/// A form body of type `T`, read and parsed within the [`InputLimits`].
pub struct Form<T>(pub T);

impl<T: FromPairs + 'static> FromRequest for Form<T> {
    type Error = InputError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, InputError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limits = req.app_data::<InputLimits>().copied().unwrap_or_default();
        let head = check_body_head(req, limits.max_body_bytes);
        let payload = payload.take();
        Box::pin(async move {
            let (declared, typed) = head?;
            let body = read_body(payload, declared, &limits).await?;
            if body.is_empty() {
                return Ok(Form(T::parse_form(b"")?));
            }
            if !typed {
                return Err(InputError::ContentType);
            }
            Ok(Form(T::parse_form(&body)?))
        })
    }
}

/// A body of type `T` as a form or as JSON (`application/json`), read within the
/// [`InputLimits`]: for endpoints whose callers are programs that may prefer either.
pub struct FormOrJson<T>(pub T);

impl<T: FromPairs + serde::de::DeserializeOwned + 'static> FromRequest for FormOrJson<T> {
    type Error = InputError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, InputError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limits = req.app_data::<InputLimits>().copied().unwrap_or_default();
        let json = content_essence(req).is_some_and(|e| e.eq_ignore_ascii_case("application/json"));
        let head = if json {
            check_body_length(req, limits.max_body_bytes).map(|d| (d, true))
        } else {
            check_body_head(req, limits.max_body_bytes)
        };
        let payload = payload.take();
        Box::pin(async move {
            let (declared, typed) = head?;
            let body = read_body(payload, declared, &limits).await?;
            if json {
                return serde_json::from_slice(&body)
                    .map(FormOrJson)
                    .map_err(|_| InputError::Json);
            }
            if !body.is_empty() && !typed {
                return Err(InputError::ContentType);
            }
            Ok(FormOrJson(T::parse_form(&body)?))
        })
    }
}

fn content_essence(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::CONTENT_TYPE)?;
    Some(v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim())
}

/// The declared length of the body, refused if over `max`.
fn check_body_length(req: &HttpRequest, max: usize) -> Result<Option<usize>, InputError> {
    let declared = match req.headers().get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(InputError::Read)?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > max) {
        return Err(InputError::BodyTooLarge);
    }
    Ok(declared)
}

/// Checks what the head says of the body: its declared length against the limit, and its
/// content type. Returns the declared length and whether the type is a form; a body with no
/// content type is refused later, unless it is empty.
fn check_body_head(req: &HttpRequest, max: usize) -> Result<(Option<usize>, bool), InputError> {
    let declared = check_body_length(req, max)?;
    let typed = match content_essence(req) {
        None => false,
        Some(essence) => {
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(InputError::ContentType);
            }
            true
        }
    };
    Ok((declared, typed))
}

/// Reads the whole body, at most `max_body_bytes`, within `body_timeout`. A body that arrives
/// in one chunk (the common case) is kept as that chunk, not copied.
async fn read_body(mut payload: Payload, declared: Option<usize>, limits: &InputLimits) -> Result<Bytes, InputError> {
    let max = limits.max_body_bytes;
    let read = async move {
        let mut first: Option<Bytes> = None;
        let mut rest: Option<BytesMut> = None;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                actix_web::error::PayloadError::Overflow => InputError::BodyTooLarge,
                _ => InputError::Read,
            })?;
            let so_far = rest.as_ref().map_or(0, |b| b.len()) + first.as_ref().map_or(0, |b| b.len());
            if so_far + chunk.len() > max {
                return Err(InputError::BodyTooLarge);
            }
            match (&mut first, &mut rest) {
                (None, None) => first = Some(chunk),
                (Some(f), None) => {
                    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).clamp(f.len() + chunk.len(), max));
                    buf.extend_from_slice(f);
                    buf.extend_from_slice(&chunk);
                    first = None;
                    rest = Some(buf);
                }
                (_, Some(buf)) => buf.extend_from_slice(&chunk),
            }
        }
        Ok(match (first, rest) {
            (_, Some(buf)) => buf.freeze(),
            (Some(f), None) => f,
            (None, None) => Bytes::new(),
        })
    };
    // A body that came with its head (nearly every form) is read without arming a timer.
    let mut read = std::pin::pin!(read);
    if let Some(body) = futures_util::FutureExt::now_or_never(read.as_mut()) {
        return body;
    }
    actix_rt::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| InputError::BodyTimeout)?
}

/// Whether `path` is a browser endpoint, which answers with pages rather than JSON.
pub(super) fn is_browser_path(path: &str) -> bool {
    [routes::AUTHORIZE, routes::LOGIN, routes::CONSENT, routes::LOGOUT].contains(&path)
}

/// The bounds on a request's head that actix-http does not apply itself.
pub fn check_head(req: &HttpRequest, limits: &InputLimits) -> Result<(), InputError> {
    if req.query_string().len() > limits.max_query_bytes {
        return Err(InputError::QueryTooLong);
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADER_COUNT {
        return Err(InputError::HeadersTooLarge);
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(InputError::HeadersTooLarge);
    }
    Ok(())
}

/// The answer to a request whose head [`check_head`] refuses: a page on the browser endpoints,
/// OAuth JSON elsewhere. `None` for a head within the bounds.
pub fn head_refusal(req: &ServiceRequest) -> Option<actix_web::HttpResponse> {
    let limits = req.app_data::<InputLimits>().copied().unwrap_or_default();
    let e = check_head(req.request(), &limits).err()?;
    Some(if is_browser_path(req.path()) {
        super::pages::input_error(&e)
    } else {
        e.error_response()
    })
}
