//! The request's id and address, for the audit log and every log line of the request.
//!
//! Every request gets an id: the `X-Request-Id` a trusted proxy sent (`trusted_proxies`), or one
//! made here, which is unique within this process and across restarts (a random prefix per
//! process and a counter). The id is echoed in the response's `X-Request-Id`, and is with the
//! client address in the [`RequestContext`] the request is served in, which audit events and
//! every log line written while serving it read (`crate::logging`).
//!
//! Guarantees: an id from anyone but a trusted proxy is never believed, and a believed one is
//! short printable ASCII (at most [`MAX_LEN`] bytes of a safe set), so it can neither forge a
//! log line nor grow one without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web;

use super::AppState;
use crate::audit::RequestContext;
use crate::limits::TrustedProxies;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a proxy.
pub const MAX_LEN: usize = 128;

/// Whether a proxy's id may be used as it is: 1 to [`MAX_LEN`] bytes of letters, digits and
/// `-._:/+=@`, which covers UUIDs and the trace ids of common proxies.
pub fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/+=@".contains(&b))
}

/// A new id: this process's random prefix and the next number.
pub fn fresh() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| crate::crypto::random_string("", 6));
    format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The id of a request from a peer that `trusted` does or does not believe.
fn request_id(req: &ServiceRequest, trusted: &TrustedProxies) -> String {
    let from_proxy = req.peer_addr().is_some_and(|peer| trusted.contains(peer.ip()));
    if from_proxy {
        if let Some(id) = req.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
            if acceptable(id) {
                return id.to_owned();
            }
        }
    }
    fresh()
}

/// The context a request is served in (its id and client address), and the id as the
/// response's `X-Request-Id`. Listeners without the shared state (the metrics listener) trust
/// no proxy.
pub fn context_of(req: &ServiceRequest) -> (RequestContext, Option<HeaderValue>) {
    let no_proxies = TrustedProxies::default();
    let state = req.app_data::<web::Data<AppState>>();
    let trusted = state.map_or(&no_proxies, |s| s.authority.limits().trusted_proxies());
    let id = request_id(req, trusted);
    let header = HeaderValue::from_str(&id).ok();
    let ctx = RequestContext {
        request_id: Arc::from(id),
        client_addr: super::client_addr::resolve(req.request(), trusted),
    };
    (ctx, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_safe_ids_are_taken() {
        assert!(acceptable("7f1c2b9e-3a4d-4e5f-8a6b-1c2d3e4f5a6b"));
        assert!(acceptable("Root=1-5759e988-bd862e3fe1be46a994272793"));
        for bad in ["", "a b", "a\nb", "a\"b", "é", "x;y"] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        assert!(acceptable(&"a".repeat(MAX_LEN)));
        assert!(!acceptable(&"a".repeat(MAX_LEN + 1)));
    }

    #[test]
    fn fresh_ids_differ_and_are_acceptable() {
        let (a, b) = (fresh(), fresh());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b), "{a} {b}");
    }
}
