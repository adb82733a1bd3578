//! The subscriber's side of the revocation feed, as a test needs it: a reader of the event
//! stream, polls, and the SETs' payloads and signatures.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::Value;

use super::{client, Reply};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The SET's payload.
    pub fn set(&self) -> Value {
        set_payload(&self.data)
    }
}

/// An open `GET /oauth/revocations/stream`.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>>>,
    buf: String,
    /// Comment lines seen (`ready`, `hb`).
    pub comments: Vec<String>,
}

impl EventStream {
    /// Opens the stream as `(id, secret)`, after `last` when given. Panics unless it is 200.
    pub async fn open(base: &str, (id, secret): (&str, &str), last: Option<&str>) -> EventStream {
        let mut req = awc::Client::builder()
            .timeout(Duration::from_secs(600))
            .finish()
            .get(format!("{base}/oauth/revocations/stream"))
            .basic_auth(id, secret)
            .insert_header(("accept", "text/event-stream"));
        if let Some(last) = last {
            req = req.insert_header(("last-event-id", last));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("content-type").unwrap(), "text/event-stream");
        EventStream {
            body: Box::pin(res),
            buf: String::new(),
            comments: Vec::new(),
        }
    }

    /// The next event within `wait`, or `None` when none came (or the stream ended).
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.parse_one() {
                return Some(e);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk.ok()?).unwrap());
        }
    }

    /// Whether the stream ends within `wait` (anything but events may come before).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Takes one complete event (up to a blank line) out of the buffer; comments are recorded.
    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let mut e = SseEvent {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(c) = line.strip_prefix(':') {
                    self.comments.push(c.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("id: ") {
                    e.id = Some(v.to_owned());
                    any = true;
                } else if let Some(v) = line.strip_prefix("event: ") {
                    e.event = v.to_owned();
                    any = true;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    e.data.push_str(v);
                    any = true;
                }
            }
            if any {
                return Some(e);
            }
        }
    }
}

/// `GET /oauth/revocations?after=…` as `(id, secret)`.
pub async fn poll(base: &str, (id, secret): (&str, &str), after: Option<&str>) -> Reply {
    let url = match after {
        Some(a) => format!("{base}/oauth/revocations?after={a}&max=1000"),
        None => format!("{base}/oauth/revocations"),
    };
    Reply::read(client().get(url).basic_auth(id, secret).send().await.unwrap()).await
}

/// The SETs of a poll's answer, in sequence order: `(seq, payload)`.
pub fn polled_sets(reply: &Reply) -> Vec<(u64, Value)> {
    let mut sets: Vec<(u64, Value)> = reply.json["sets"]
        .as_object()
        .unwrap_or_else(|| panic!("no sets: {}", reply.text))
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), set_payload(v.as_str().unwrap())))
        .collect();
    sets.sort_by_key(|s| s.0);
    sets
}

/// The payload of a compact JWS.
pub fn set_payload(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The event type and body of a SET (it has exactly one).
pub fn event_of(set: &Value) -> (String, Value) {
    let events = set["events"].as_object().expect("events");
    assert_eq!(events.len(), 1, "one event per SET: {set}");
    let (k, v) = events.iter().next().unwrap();
    (k.clone(), v.clone())
}

/// The opaque id a token-revoked SET names.
pub fn revoked_jti(set: &Value) -> Option<String> {
    (event_of(set).0 == "urn:tessera:secevent:token-revoked").then(|| set["sub_id"]["id"].as_str().unwrap().to_owned())
}

/// Whether `jws` carries a valid ES256 signature by a key of `jwks`, with `typ` `secevent+jwt`.
pub fn verifies_es256(jws: &str, jwks: &Value) -> bool {
    verifies_es256_typed(jws, jwks, "secevent+jwt")
}

/// Whether `jws` carries a valid ES256 signature by a key of `jwks`, with this `typ`.
pub fn verifies_es256_typed(jws: &str, jwks: &Value, typ: &str) -> bool {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    let parts: Vec<&str> = jws.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    if header["typ"] != typ || header["alg"] != "ES256" {
        return false;
    }
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    let coord = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend(coord("x"));
    sec1.extend(coord("y"));
    let key = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    key.verify(input.as_bytes(), &sig).is_ok()
}
