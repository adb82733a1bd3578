//! The browser side of sign-in: the session cookie and CSRF tokens.
//!
//! The session is a signed cookie, not server state: `v1.<payload>.<tag>`, where the payload
//! (base64url JSON) names the user, their subject, when they authenticated, when the session
//! ends and which password it was opened with (a keyed tag of its hash), and the tag is an HMAC
//! under the server key. Nothing in it is secret, and nothing in it can be changed without the
//! key. The handlers also ask the authority whether the user still exists with that password,
//! so a password change or a removal ends every session. It is `HttpOnly` and `SameSite=Lax`.
//! Signing out clears it in the browser.
//!
//! Under https (the issuer is https, whether Tessera terminates TLS or a proxy does) both
//! cookies are `Secure` and carry the `__Host-` prefix, which makes the browser refuse them
//! unless they are `Secure`, `Path=/` and without `Domain`: a sibling subdomain or a plain-http
//! page cannot plant or overwrite them. Under http they keep their plain names.
//!
//! CSRF protection is a double submit bound to the key: a random `tessera_csrf` cookie, and in
//! every form the HMAC of that cookie's value. A cross-site page can make the browser send the
//! cookie, but cannot read it, so it cannot compute the form field.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::authority::SignedIn;
use crate::crypto::{random_string, tags_match, ServerKey};

pub const SESSION_COOKIE: &str = "tessera_session";
pub const CSRF_COOKIE: &str = "tessera_csrf";
pub const SECURE_SESSION_COOKIE: &str = "__Host-tessera_session";
pub const SECURE_CSRF_COOKIE: &str = "__Host-tessera_csrf";

fn session_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

fn csrf_name(secure: bool) -> &'static str {
    if secure {
        SECURE_CSRF_COOKIE
    } else {
        CSRF_COOKIE
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Username.
    u: String,
    /// Subject.
    s: String,
    /// Authentication time.
    t: u64,
    /// Expiry.
    e: u64,
    /// The password epoch (`SignedIn::epoch`).
    p: String,
}

fn tag(key: &ServerKey, payload: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.tag("session", payload.as_bytes()))
}

/// The cookie for a fresh sign-in, valid until `expires`.
pub fn session_cookie(key: &ServerKey, user: &SignedIn, expires: u64, secure: bool) -> Cookie<'static> {
    let payload = Payload {
        u: user.username.clone(),
        s: user.sub.clone(),
        t: user.auth_time,
        e: expires,
        p: user.epoch.clone(),
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("serialising a plain struct"));
    let value = format!("v1.{}.{}", payload, tag(key, &payload));
    let max_age = expires.saturating_sub(user.auth_time).min(i64::MAX as u64) as i64;
    base_cookie(session_name(secure), value, secure)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// A cookie that removes the session.
pub fn cleared_session(secure: bool) -> Cookie<'static> {
    base_cookie(session_name(secure), String::new(), secure)
        .max_age(CookieDuration::ZERO)
        .finish()
}

/// `Path=/` and no `Domain`, as the `__Host-` prefix requires.
fn base_cookie(name: &'static str, value: String, secure: bool) -> actix_web::cookie::CookieBuilder<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
}

/// The signed-in user of `req`, if its session cookie (of the name `secure` selects) is intact
/// and unexpired at `now`.
pub fn current_user(req: &HttpRequest, key: &ServerKey, now: u64, secure: bool) -> Option<SignedIn> {
    let cookie = req.cookie(session_name(secure))?;
    let rest = cookie.value().strip_prefix("v1.")?;
    let (payload, given) = rest.split_once('.')?;
    if !tags_match(tag(key, payload).as_bytes(), given.as_bytes()) {
        return None;
    }
    let p: Payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (now < p.e).then_some(SignedIn {
        username: p.u,
        sub: p.s,
        auth_time: p.t,
        epoch: p.p,
    })
}

/// This request's CSRF cookie value, or a new one (to be set on the response) if it has none.
pub fn csrf_seed(req: &HttpRequest, secure: bool) -> (String, Option<Cookie<'static>>) {
    match req.cookie(csrf_name(secure)).filter(|c| c.value().len() >= 16) {
        Some(c) => (c.value().to_owned(), None),
        None => {
            let seed = random_string("", 16);
            let cookie = base_cookie(csrf_name(secure), seed.clone(), secure).finish();
            (seed, Some(cookie))
        }
    }
}

/// The form field that proves a form came from a page of ours: the HMAC of the CSRF cookie.
pub fn csrf_token(key: &ServerKey, seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.tag("csrf", seed.as_bytes()))
}

/// Whether `submitted` is the CSRF token for this request's CSRF cookie.
pub fn csrf_ok(req: &HttpRequest, key: &ServerKey, submitted: Option<&str>, secure: bool) -> bool {
    match (req.cookie(csrf_name(secure)), submitted) {
        (Some(seed), Some(submitted)) => tags_match(csrf_token(key, seed.value()).as_bytes(), submitted.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn key() -> ServerKey {
        ServerKey::from_bytes(&[8; 32]).unwrap()
    }

    fn alice() -> SignedIn {
        SignedIn {
            username: "alice".into(),
            sub: "s-1".into(),
            auth_time: 100,
            epoch: "e-1".into(),
        }
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let c = session_cookie(&key(), &alice(), 200, true);
        assert!(c.http_only().unwrap() && c.secure().unwrap());
        assert_eq!(c.same_site(), Some(SameSite::Lax));
        assert_eq!(c.name(), "__Host-tessera_session");
        assert_eq!((c.path(), c.domain()), (Some("/"), None), "as __Host- requires");
        let req = TestRequest::default().cookie(c.clone()).to_http_request();
        assert!(
            current_user(&req, &key(), 150, false).is_none(),
            "only the name of the mode counts"
        );
        let user = current_user(&req, &key(), 150, true).unwrap();
        assert_eq!(
            (user.username.as_str(), user.sub.as_str(), user.auth_time),
            ("alice", "s-1", 100)
        );
        assert_eq!(user.epoch, "e-1");
        assert!(current_user(&req, &key(), 200, true).is_none(), "expired");
        let other_key = ServerKey::from_bytes(&[9; 32]).unwrap();
        assert!(current_user(&req, &other_key, 150, true).is_none());
        let plain = session_cookie(&key(), &alice(), 200, false);
        assert_eq!((plain.name(), plain.secure()), ("tessera_session", Some(false)));
        assert_eq!(cleared_session(true).name(), "__Host-tessera_session");
    }

    #[test]
    fn a_changed_session_is_refused() {
        let c = session_cookie(&key(), &alice(), 200, false);
        let (head, tag) = c.value().rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"u":"admin","s":"s-0","t":100,"e":999,"p":"e-1"}"#);
        for value in [
            format!("v1.{forged_payload}.{tag}"),
            format!("{head}.{}", "A".repeat(tag.len())),
            format!("v2.{}", &c.value()[3..]),
            "garbage".to_owned(),
        ] {
            let req = TestRequest::default()
                .cookie(Cookie::new(SESSION_COOKIE, value.clone()))
                .to_http_request();
            assert!(current_user(&req, &key(), 150, false).is_none(), "{value}");
        }
    }

    #[test]
    fn csrf_tokens_bind_to_the_cookie() {
        for secure in [false, true] {
            let fresh = TestRequest::default().to_http_request();
            let (seed, cookie) = csrf_seed(&fresh, secure);
            let cookie = cookie.expect("a request without the cookie gets one");
            assert_eq!(cookie.secure(), Some(secure));
            assert_eq!(cookie.name().starts_with("__Host-"), secure);
            let token = csrf_token(&key(), &seed);
            let req = TestRequest::default().cookie(cookie).to_http_request();
            assert_eq!(csrf_seed(&req, secure).0, seed, "an existing cookie is kept");
            assert!(csrf_ok(&req, &key(), Some(&token), secure));
            assert!(
                !csrf_ok(&req, &key(), Some(&token), !secure),
                "the other mode's cookie does not count"
            );
            assert!(!csrf_ok(&req, &key(), Some("forged"), secure));
            assert!(!csrf_ok(&req, &key(), None, secure));
            assert!(!csrf_ok(&fresh, &key(), Some(&token), secure), "no cookie, no pass");
        }
    }
}
