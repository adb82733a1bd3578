//! The client address of a request, for the limits, the sign-in throttle and anything that
//! records who asked: the peer address, or what a trusted proxy says it forwarded for
//! (`limits::proxies` decides, this only reads the request).

use std::net::IpAddr;

use actix_web::http::header::{HeaderName, X_FORWARDED_FOR};
use actix_web::HttpRequest;

use crate::audit::RequestContext;
use crate::limits::TrustedProxies;

/// The address `req` comes from, as `trusted` resolves it. Inside `http::edge` that was done
/// once for the request, and its [`RequestContext`] answers without reading the headers again.
pub fn client_address(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    RequestContext::current_addr().unwrap_or_else(|| resolve(req, trusted))
}

/// Resolves the address `req` comes from: its peer, or what a trusted proxy forwarded for.
pub fn resolve(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    if trusted.is_empty() {
        return peer;
    }
    const XFF: HeaderName = X_FORWARDED_FOR;
    // A header line that is not visible ASCII cannot be believed; it reads as a hop that does
    // not parse, which ends the walk at the proxy.
    let lines: Vec<&str> = req.headers().get_all(XFF).map(|v| v.to_str().unwrap_or("?")).collect();
    trusted.client_address(peer, lines.into_iter())
}
