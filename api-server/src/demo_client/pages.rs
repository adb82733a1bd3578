//! What the demo client's pages show, built from a session: askama templates (under
//! `templates/demo/`) and the plain structs they render.
//!
//! Guarantees: a view holds only shortened access and refresh tokens (`protocol::shorten`), never
//! the full values, and no token at all in a form field; everything is HTML-escaped by askama;
//! the ID token's claims are labelled as unverified.

use std::time::Instant;

use askama::Template;

use super::protocol::{id_token_claims_for_display, shorten};
use super::session::{ApiCall, Session, Tokens};

/// The home page, signed in or out.
#[derive(Template)]
#[template(path = "demo/index.html")]
pub struct IndexPage {
    pub error: Option<String>,
    pub notice: Option<String>,
    pub signed_in: Option<SignedInView>,
}

/// What the signed-in page shows.
pub struct SignedInView {
    pub csrf: String,
    pub access_token: String,
    pub token_type: String,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub expiry: String,
    pub revoked: bool,
    pub id_token_claims: Option<String>,
    pub last_call: Option<ApiCall>,
}

/// A page for a request that could not be served (bad input, unknown session, forged form).
#[derive(Template)]
#[template(path = "demo/error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub error: &'a str,
}

impl IndexPage {
    /// The page for `session` (or for no session), consuming its one-time messages.
    pub fn for_session(session: Option<&mut Session>, now: Instant) -> Self {
        let Some(session) = session else {
            return IndexPage {
                error: None,
                notice: None,
                signed_in: None,
            };
        };
        IndexPage {
            error: session.flash_error.take(),
            notice: session.flash_notice.take(),
            signed_in: session.tokens.as_ref().map(|tokens| SignedInView {
                csrf: session.csrf.clone(),
                access_token: shorten(&tokens.access_token),
                token_type: tokens.token_type.clone(),
                refresh_token: tokens.refresh_token.as_deref().map(shorten),
                scope: tokens.scope.clone(),
                expiry: expiry_text(tokens, now),
                revoked: tokens.revoked,
                id_token_claims: tokens.id_token.as_deref().and_then(id_token_claims_for_display),
                last_call: session.last_call.clone(),
            }),
        }
    }
}

/// The access token's lifetime as the page states it, from `expires_in` and when it arrived.
pub fn expiry_text(tokens: &Tokens, now: Instant) -> String {
    let Some(lifetime) = tokens.expires_in else {
        return "not stated by Tessera".to_owned();
    };
    let age = now.saturating_duration_since(tokens.obtained_at).as_secs();
    if age < lifetime {
        format!("in {} s (lifetime {lifetime} s)", lifetime - age)
    } else {
        format!("expired {} s ago (lifetime {lifetime} s)", age - lifetime)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::demo_client::session::SessionStore;

    fn tokens(now: Instant) -> Tokens {
        Tokens {
            access_token: "tsa_access_token_full_value".into(),
            token_type: "Bearer".into(),
            refresh_token: Some("tsr_refresh_token_full_value".into()),
            id_token: None,
            scope: "openid read".into(),
            expires_in: Some(3600),
            obtained_at: now,
            revoked: false,
        }
    }

    #[test]
    fn expiry_counts_down_then_reports_expiry() {
        let now = Instant::now();
        let t = tokens(now);
        assert_eq!(
            expiry_text(&t, now + Duration::from_secs(600)),
            "in 3000 s (lifetime 3600 s)"
        );
        assert_eq!(
            expiry_text(&t, now + Duration::from_secs(3700)),
            "expired 100 s ago (lifetime 3600 s)"
        );
        let unstated = Tokens { expires_in: None, ..t };
        assert_eq!(expiry_text(&unstated, now), "not stated by Tessera");
    }

    #[test]
    fn the_signed_in_page_shows_shortened_tokens_only_and_flashes_once() {
        let store = SessionStore::new(10, Duration::from_secs(3600));
        let now = Instant::now();
        let id = store.create(now);
        let html = store
            .with(&id, now, |s| {
                s.tokens = Some(tokens(now));
                s.flash_error = Some("<b>bad</b>".into());
                IndexPage::for_session(Some(s), now).render().unwrap()
            })
            .unwrap();
        assert!(!html.contains("tsa_access_token_full_value"));
        assert!(!html.contains("tsr_refresh_token_full_value"));
        assert!(html.contains(r#"id="access-token">tsa_acce…<"#), "{html}");
        assert!(html.contains(r#"id="refresh-token">tsr_refr…<"#));
        assert!(html.contains(r#"id="scope">openid read<"#));
        assert!(
            html.contains("&#60;b&#62;bad&#60;/b&#62;") || html.contains("&lt;b&gt;bad"),
            "escaped"
        );
        assert!(!html.contains("<b>bad</b>"));
        for id in [
            "call-protected",
            "call-profile",
            "call-update",
            "call-data",
            "refresh",
            "revoke",
            "sign-out",
        ] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "{id}");
        }
        let again = store
            .with(&id, now, |s| IndexPage::for_session(Some(s), now).render().unwrap())
            .unwrap();
        assert!(!again.contains(r#"id="error""#), "a flash is shown once");
    }

    #[test]
    fn the_signed_out_page_offers_sign_in_and_no_forms() {
        let html = IndexPage::for_session(None, Instant::now()).render().unwrap();
        assert!(html.contains(r#"id="sign-in""#));
        assert!(!html.contains("<form"));
    }
}
