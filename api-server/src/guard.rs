//! The actix-web side of bearer-token checks: the [`Caller`] extractor and the [`RequireScope`]
//! middleware.
//!
//! A handler that takes a [`Caller`] runs only for a valid access token. A resource wrapped in
//! `RequireScope::new("write")` runs only when the token also has `write`; the middleware answers
//! before any body is read, and hands the caller on to the handler's [`Caller`] so the token is
//! looked up once. Both need a [`ResourceServer`] in the app data (`App::app_data(rs.clone())`).

use std::future::{ready, Future};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::error::AuthError;
use crate::resource::{Caller, ResourceServer};

/// Longest bearer token looked at; Tessera's are under 100 characters.
const MAX_TOKEN_LEN: usize = 4096;

/// The token of an `Authorization: Bearer …` header (RFC 6750 §2.1). A header with another
/// scheme counts as no token; a bearer value that is not a `b64token` is malformed.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedToken);
    }
    let value = value.to_str().map_err(|_| AuthError::MalformedToken)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    if is_b64token(token) {
        Ok(token)
    } else {
        Err(AuthError::MalformedToken)
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len() <= MAX_TOKEN_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Authenticates a request, or takes the caller a [`RequireScope`] already found.
fn caller_of(req: &HttpRequest) -> LocalFuture<Result<Caller, AuthError>> {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return Box::pin(ready(Ok(caller.clone())));
    }
    let Some(rs) = resource_server(req) else {
        return Box::pin(ready(Err(AuthError::NotConfigured)));
    };
    let token = match bearer_token(req.headers()) {
        Ok(t) => t.to_owned(),
        Err(e) => return Box::pin(ready(Err(e))),
    };
    Box::pin(async move { rs.authenticate(&token).await })
}

fn resource_server(req: &HttpRequest) -> Option<ResourceServer> {
    req.app_data::<ResourceServer>()
        .or_else(|| {
            req.app_data::<actix_web::web::Data<ResourceServer>>()
                .map(|d| d.get_ref())
        })
        .cloned()
}

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = LocalFuture<Result<Caller, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        caller_of(req)
    }
}

/// Middleware: lets a request through only with a valid access token granted `scope`.
#[derive(Clone)]
pub struct RequireScope(Rc<str>);

impl RequireScope {
    pub fn new(scope: &str) -> RequireScope {
        RequireScope(scope.into())
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireScope
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireScopeService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireScopeService {
            service: Rc::new(service),
            scope: self.0.clone(),
        }))
    }
}

pub struct RequireScopeService<S> {
    service: Rc<S>,
    scope: Rc<str>,
}

impl<S, B> Service<ServiceRequest> for RequireScopeService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let scope = self.scope.clone();
        Box::pin(async move {
            let checked = match caller_of(req.request()).await {
                Ok(caller) => caller.require(&scope).map(|()| caller),
                Err(e) => Err(e),
            };
            match checked {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    service.call(req).await.map(ServiceResponse::map_into_left_body)
                }
                Err(e) => Ok(req.error_response(e).map_into_right_body()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn parse(values: &[&str]) -> Result<String, AuthError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        bearer_token(&h).map(str::to_owned)
    }

    #[test]
    fn bearer_tokens_are_read_per_rfc_6750() {
        assert_eq!(parse(&["Bearer tsa_abc-DEF.1~+/=="]).unwrap(), "tsa_abc-DEF.1~+/==");
        assert_eq!(parse(&["bearer  tsa_x"]).unwrap(), "tsa_x");
        assert_eq!(parse(&[]), Err(AuthError::MissingToken));
        assert_eq!(parse(&["Basic YTpi"]), Err(AuthError::MissingToken));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ==",
            "Bearer a=b",
        ] {
            assert_eq!(parse(&[bad]), Err(AuthError::MalformedToken), "{bad:?}");
        }
        assert_eq!(parse(&["Bearer a", "Bearer b"]), Err(AuthError::MalformedToken));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(parse(&[&long]), Err(AuthError::MalformedToken));
    }
}
