//! Decoding the Security Event Tokens (RFC 8417) of Tessera's revocation feed into what they
//! revoke.
//!
//! The resource server trusts the authenticated channel the events arrive on, as it trusts
//! introspection answers, so only the payload (the middle part of the compact JWS) is decoded;
//! the signature is not checked. Every input, however broken, gives a value or a
//! [`DecodeError`], never a panic. What the subscriber does with an error is its business (see
//! [`DecodeError::is_unknown_type`]).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

pub const TOKEN_REVOKED: &str = "urn:tessera:secevent:token-revoked";
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const FEED_RESET: &str = "urn:tessera:secevent:feed-reset";

/// Longest SET decoded; Tessera's are a few hundred bytes.
const MAX_SET_LEN: usize = 16 * 1024;

/// base64url, with or without padding (the contract says without; being lenient costs nothing).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What one event revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One token, by its `jti`.
    Token(String),
    /// Every token of a grant (token family), by its `grant_id`.
    Grant(String),
    /// Every token of a user at an issuer.
    Subject { iss: String, sub: String },
    /// Every token of a client, by its `client_id`.
    Client(String),
    /// The subscriber missed events it cannot get back: everything cached must go.
    Reset,
}

impl Revoked {
    /// The `type` label of the events metric.
    pub fn label(&self) -> &'static str {
        match self {
            Revoked::Token(_) => "token",
            Revoked::Grant(_) => "grant",
            Revoked::Subject { .. } => "subject",
            Revoked::Client(_) => "client",
            Revoked::Reset => "reset",
        }
    }
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub revoked: Revoked,
    /// When the revocation happened (seconds since the Unix epoch): every token the event names
    /// was issued at or before it. Absent in the event, the SET's `iat` stands in for it.
    pub event_timestamp: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a compact JWS of three parts")]
    NotCompactJws,
    #[error("the SET is longer than {MAX_SET_LEN} bytes")]
    TooLong,
    #[error("the payload is not base64url")]
    Base64,
    #[error("the payload is not a SET: {0}")]
    Json(String),
    #[error("the SET has {0} events, not exactly one")]
    EventCount(usize),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("the subject of a {0} event is missing or not understood")]
    Subject(&'static str),
}

impl DecodeError {
    /// An event of a type this subscriber does not know is not about anything it caches (the
    /// feed advertises the types it sends); every other error is a revocation that could not be
    /// read.
    pub fn is_unknown_type(&self) -> bool {
        matches!(self, DecodeError::UnknownType(_))
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    sub_id: Option<Value>,
    events: Map<String, Value>,
}

/// Decodes a compact JWS carrying one of the contract's SETs.
pub fn decode_set(jws: &str) -> Result<FeedEvent, DecodeError> {
    let jws = jws.trim();
    if jws.len() > MAX_SET_LEN {
        return Err(DecodeError::TooLong);
    }
    let mut parts = jws.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::NotCompactJws);
    };
    let bytes = B64URL.decode(payload).map_err(|_| DecodeError::Base64)?;
    let payload: Payload = serde_json::from_slice(&bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    if payload.events.len() != 1 {
        return Err(DecodeError::EventCount(payload.events.len()));
    }
    let Some((event_type, body)) = payload.events.iter().next() else {
        return Err(DecodeError::EventCount(0));
    };
    let event_timestamp = body
        .get("event_timestamp")
        .and_then(seconds)
        .or_else(|| payload.iat.as_ref().and_then(seconds));
    let sub_id = payload.sub_id.as_ref();
    let revoked = match event_type.as_str() {
        TOKEN_REVOKED => {
            let id = sub_id
                .filter(|s| format_of(s) == Some("opaque"))
                .and_then(|s| text(s, "id"))
                .ok_or(DecodeError::Subject("token-revoked"))?;
            Revoked::Token(id)
        }
        SESSION_REVOKED => session_subject(sub_id).ok_or(DecodeError::Subject("session-revoked"))?,
        FEED_RESET => Revoked::Reset,
        other => return Err(DecodeError::UnknownType(other.chars().take(200).collect())),
    };
    Ok(FeedEvent {
        revoked,
        event_timestamp,
    })
}

/// The RFC 9493 subject of a session-revoked event: a grant (`complex` with `session`), a user
/// (`iss_sub`, alone or as the `user` of a `complex`), or a client (`complex` with
/// `application`). A session is the narrowest, so it wins when a `complex` names several.
fn session_subject(sub_id: Option<&Value>) -> Option<Revoked> {
    let sub_id = sub_id?;
    match format_of(sub_id)? {
        "iss_sub" => iss_sub(sub_id),
        "complex" => {
            if let Some(session) = sub_id.get("session") {
                return opaque_id(session).map(Revoked::Grant);
            }
            if let Some(user) = sub_id.get("user") {
                return iss_sub(user);
            }
            opaque_id(sub_id.get("application")?).map(Revoked::Client)
        }
        _ => None,
    }
}

fn iss_sub(v: &Value) -> Option<Revoked> {
    if format_of(v)? != "iss_sub" {
        return None;
    }
    Some(Revoked::Subject {
        iss: text(v, "iss")?,
        sub: text(v, "sub")?,
    })
}

fn opaque_id(v: &Value) -> Option<String> {
    if format_of(v)? != "opaque" {
        return None;
    }
    text(v, "id")
}

fn format_of(v: &Value) -> Option<&str> {
    v.get("format")?.as_str()
}

/// A non-empty string member.
fn text(v: &Value, member: &str) -> Option<String> {
    v.get(member)?.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Seconds since the epoch, as an integer or (leniently) a non-negative finite number.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A compact JWS with `payload`, as Tessera would send it (the signature is not checked).
    pub(crate) fn set(payload: &Value) -> String {
        let header = B64URL.encode(br#"{"alg":"RS256","kid":"k1","typ":"secevent+jwt"}"#);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.c2lnbmF0dXJl")
    }

    fn payload(event_type: &str, sub_id: Option<Value>) -> Value {
        let mut p = json!({
            "iss": "http://127.0.0.1:4000", "iat": 1_764_600_001u64, "jti": "42",
            "events": { event_type: { "event_timestamp": 1_764_600_000u64 } },
        });
        if let Some(s) = sub_id {
            p["sub_id"] = s;
        }
        p
    }

    fn decode(event_type: &str, sub_id: Option<Value>) -> Result<FeedEvent, DecodeError> {
        decode_set(&set(&payload(event_type, sub_id)))
    }

    #[test]
    fn every_row_of_the_contract_decodes() {
        let rows = [
            (
                TOKEN_REVOKED,
                Some(json!({"format":"opaque","id":"AAAAAAAAAAAAAAAAAAAAAA"})),
                Revoked::Token("AAAAAAAAAAAAAAAAAAAAAA".into()),
            ),
            (
                SESSION_REVOKED,
                Some(json!({"format":"complex","session":{"format":"opaque","id":"g-1"}})),
                Revoked::Grant("g-1".into()),
            ),
            (
                SESSION_REVOKED,
                Some(json!({"format":"iss_sub","iss":"http://127.0.0.1:4000","sub":"u-1"})),
                Revoked::Subject {
                    iss: "http://127.0.0.1:4000".into(),
                    sub: "u-1".into(),
                },
            ),
            (
                SESSION_REVOKED,
                Some(json!({"format":"complex","application":{"format":"opaque","id":"demo-client"}})),
                Revoked::Client("demo-client".into()),
            ),
            (FEED_RESET, None, Revoked::Reset),
        ];
        for (event_type, sub_id, revoked) in rows {
            let event = decode(event_type, sub_id).unwrap();
            assert_eq!(event.revoked, revoked);
            assert_eq!(event.event_timestamp, Some(1_764_600_000));
        }
    }

    #[test]
    fn a_missing_event_timestamp_falls_back_to_iat_and_padding_is_tolerated() {
        let mut p = payload(FEED_RESET, None);
        p["events"][FEED_RESET] = json!({});
        assert_eq!(decode_set(&set(&p)).unwrap().event_timestamp, Some(1_764_600_001));
        p.as_object_mut().unwrap().remove("iat");
        assert_eq!(decode_set(&set(&p)).unwrap().event_timestamp, None);
        let padded = format!(
            "e30.{}.",
            base64::engine::general_purpose::URL_SAFE.encode(payload(FEED_RESET, None).to_string())
        );
        assert_eq!(decode_set(&padded).unwrap().revoked, Revoked::Reset);
    }

    #[test]
    fn a_complex_user_and_a_session_with_an_application_decode_to_the_narrowest() {
        let user = json!({"format":"complex","user":{"format":"iss_sub","iss":"i","sub":"s"}});
        assert_eq!(
            decode(SESSION_REVOKED, Some(user)).unwrap().revoked,
            Revoked::Subject {
                iss: "i".into(),
                sub: "s".into()
            }
        );
        let both = json!({"format":"complex","session":{"format":"opaque","id":"g"},
            "application":{"format":"opaque","id":"c"}});
        assert_eq!(
            decode(SESSION_REVOKED, Some(both)).unwrap().revoked,
            Revoked::Grant("g".into())
        );
    }

    #[test]
    fn subjects_that_do_not_fit_the_event_are_errors() {
        for (event_type, sub_id) in [
            (TOKEN_REVOKED, None),
            (TOKEN_REVOKED, Some(json!({"format":"opaque"}))),
            (TOKEN_REVOKED, Some(json!({"format":"opaque","id":""}))),
            (TOKEN_REVOKED, Some(json!({"format":"email","email":"a@b"}))),
            (TOKEN_REVOKED, Some(json!({"format":"opaque","id":7}))),
            (SESSION_REVOKED, None),
            (SESSION_REVOKED, Some(json!("iss_sub"))),
            (SESSION_REVOKED, Some(json!({"format":"iss_sub","iss":"i"}))),
            (SESSION_REVOKED, Some(json!({"format":"complex"}))),
            (SESSION_REVOKED, Some(json!({"format":"complex","session":{"id":"g"}}))),
            (SESSION_REVOKED, Some(json!({"format":"complex","application":"c"}))),
            (SESSION_REVOKED, Some(json!({"format":"opaque","id":"g"}))),
        ] {
            let err = decode(event_type, sub_id.clone()).unwrap_err();
            assert!(matches!(err, DecodeError::Subject(_)), "{sub_id:?}: {err:?}");
            assert!(!err.is_unknown_type());
        }
    }

    #[test]
    fn an_unknown_event_type_is_told_apart() {
        let err = decode("urn:example:other", None).unwrap_err();
        assert!(err.is_unknown_type(), "{err:?}");
    }

    #[test]
    fn garbage_gives_errors_never_a_panic() {
        let two = json!({"events": {TOKEN_REVOKED: {}, FEED_RESET: {}}});
        let cases: Vec<String> = vec![
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "a.!!!.c".into(),
            format!("a.{}.c", B64URL.encode("not json")),
            format!("a.{}.c", B64URL.encode("[1,2]")),
            format!("a.{}.c", B64URL.encode(r#"{"events":[]}"#)),
            format!("a.{}.c", B64URL.encode(r#"{"events":{}}"#)),
            format!("a.{}.c", B64URL.encode(r#"{"iat":"x","events":{"u":7}}"#)),
            set(&two),
            format!("a.{}.c", "A".repeat(MAX_SET_LEN)),
        ];
        for case in &cases {
            let r = decode_set(case);
            assert!(r.is_err(), "{case:?}: {r:?}");
        }
        assert_eq!(decode_set(&set(&two)), Err(DecodeError::EventCount(2)));
        // Random bytes, in the shape of a JWS and not.
        for n in 0..2000u32 {
            let len = (n % 97) as usize;
            let noise: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            let text = String::from_utf8_lossy(&noise).into_owned();
            let _ = decode_set(&text);
            let _ = decode_set(&format!("a.{}.c", B64URL.encode(&noise)));
            let _ = decode_set(&format!("a.{}.c", text.replace('.', "")));
        }
    }
}
