//! The revocation feed against a real server: events reach an open stream as revocations
//! happen, a resume replays exactly what was missed, every SET is signed by a key of the JWKS,
//! each resource server sees only its audience's events, grants and users are named as
//! introspection names them, a position the log cannot serve is a reset, and an acknowledged
//! revocation is in the log after a SIGKILL. And introspection shaped for caches: batches, and
//! answers as signed JWTs (RFC 9701).

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use awc::http::StatusCode;
use common::browser::{authorize_query, Browser, VERIFIER};
use common::feed::{
    event_of, poll, polled_sets, revoked_jti, set_payload, verifies_es256, verifies_es256_typed, EventStream,
};
use common::{client, issue_at, revoke_at, Reply, TestServer};
use serde_json::{json, Value};

const API: (&str, &str) = ("api-server", "api-secret");
const DEMO: Option<(&str, &str)> = Some(("demo-client", "demo-secret"));
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// Generous: the machine is shared; the feed itself takes milliseconds.
const PROMPTLY: Duration = Duration::from_secs(5);

const RESOURCE_SERVERS: &str = r#"
[[clients]]
client_id = "rs-a"
client_secret = "rs-a-secret"
resource = "https://a.example"

[[clients]]
client_id = "rs-b"
client_secret = "rs-b-secret"
resource = "https://b.example"
"#;

async fn start() -> TestServer {
    TestServer::start(&format!("feed_heartbeat_ms = 100\n{RESOURCE_SERVERS}")).await
}

async fn jwks(s: &TestServer) -> Value {
    s.get("/oauth/jwks").await.json
}

#[actix_rt::test]
async fn revocations_reach_the_stream_and_a_resume_replays_exactly_what_was_missed() {
    let s = start().await;
    let meta = s.get("/.well-known/oauth-authorization-server").await.json;
    assert_eq!(
        meta["revocation_events_stream_endpoint"],
        s.url("/oauth/revocations/stream")
    );
    assert_eq!(meta["revocation_events_endpoint"], s.url("/oauth/revocations"));
    assert!(meta["revocation_event_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(SESSION_REVOKED)));

    let tokens: Vec<String> = futures_util::future::join_all((0..4).map(|_| s.issue("read"))).await;
    let mut jtis = Vec::new();
    for t in &tokens {
        let answer = s.introspect(t).await;
        assert_eq!(answer["jti"], s.introspect(t).await["jti"], "a token's jti is stable");
        assert!(answer.get("grant_id").is_none(), "client credentials have no grant");
        let left = answer["exp"].as_u64().unwrap() - answer["iat"].as_u64().unwrap();
        assert_eq!(answer["cache_max_age"], 5);
        assert_eq!(answer["cache_max_age_with_feed"], 300u64.min(left));
        jtis.push(answer["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis.iter().collect::<HashSet<_>>().len(), 4, "each token its own jti");
    assert!(tokens.iter().all(|t| !jtis.iter().any(|j| t.contains(j.as_str()))));

    let mut stream = EventStream::open(&s.base, API, None).await;
    s.revoke(&tokens[0]).await;
    let first = stream.next(PROMPTLY).await.expect("the revocation's event");
    assert_eq!(first.event, "revocation");
    assert_eq!(revoked_jti(&first.set()).as_deref(), Some(jtis[0].as_str()));
    assert!(
        verifies_es256(&first.data, &jwks(&s).await),
        "signed by a key of the JWKS"
    );
    let set = first.set();
    assert_eq!(set["jti"], first.id.clone().unwrap().as_str());
    assert_eq!(
        set["iss"],
        s.get("/.well-known/openid-configuration").await.json["issuer"]
    );
    assert!(stream.comments.iter().any(|c| c == "ready"));
    let hb = stream.comments.len();
    assert!(
        stream.next(Duration::from_millis(400)).await.is_none(),
        "nothing else happened"
    );
    assert!(stream.comments.len() > hb, "heartbeats keep an idle stream alive");
    drop(stream);

    // Missed while disconnected: a resume from the last id replays exactly these.
    s.revoke(&tokens[1]).await;
    s.revoke(&tokens[2]).await;
    let mut resumed = EventStream::open(&s.base, API, first.id.as_deref()).await;
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let e = resumed.next(PROMPTLY).await.expect("a missed event");
        replayed.push(revoked_jti(&e.set()).unwrap());
    }
    assert_eq!(replayed, jtis[1..3]);
    assert!(resumed.next(Duration::from_millis(300)).await.is_none(), "nothing more");
    s.revoke(&tokens[3]).await;
    let live = resumed.next(PROMPTLY).await.unwrap();
    assert_eq!(revoked_jti(&live.set()).as_deref(), Some(jtis[3].as_str()));

    // The same by polling, in pages.
    let all = poll(&s.base, API, Some("0")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let sets = polled_sets(&all);
    assert_eq!(
        sets.iter()
            .map(|(_, set)| revoked_jti(set).unwrap())
            .collect::<Vec<_>>(),
        jtis
    );
    assert_eq!(all.json["moreAvailable"], false);
    assert_eq!(all.json["last"], live.id.clone().unwrap().as_str());
    let after = poll(&s.base, API, first.id.as_deref()).await;
    assert_eq!(polled_sets(&after).len(), 3);
    let nothing = poll(&s.base, API, live.id.as_deref()).await;
    assert!(polled_sets(&nothing).is_empty());
    let head = poll(&s.base, API, None).await;
    assert_eq!(head.json["last"], all.json["last"], "without a position: only the head");

    // Revoking an unknown or already revoked token changes nothing, and says nothing.
    s.revoke(&tokens[0]).await;
    s.revoke("tsa_never_issued").await;
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());

    // A stopping server ends its streams instead of waiting for them.
    s.stop().await;
    assert!(resumed.ends_within(PROMPTLY).await);
}

#[actix_rt::test]
async fn a_resource_server_sees_only_events_about_its_audience() {
    let s = start().await;
    let issue = |resource: Option<&'static str>| {
        let s = &s;
        async move {
            let mut form = vec![("grant_type", "client_credentials"), ("scope", "read")];
            form.extend(resource.map(|r| ("resource", r)));
            let r = s.post_form("/oauth/token", DEMO, &form).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.json["access_token"].as_str().unwrap().to_owned()
        }
    };
    let for_a = issue(Some("https://a.example")).await;
    let for_all = issue(None).await;
    let jti = |who: (&'static str, &'static str), token: String| {
        let s = &s;
        async move {
            let r = s.post_form("/oauth/introspect", Some(who), &[("token", &token)]).await;
            r.json["jti"].as_str().unwrap().to_owned()
        }
    };
    let (jti_a, jti_all) = (
        jti(("rs-a", "rs-a-secret"), for_a.clone()).await,
        jti(API, for_all.clone()).await,
    );
    s.revoke(&for_a).await;
    s.revoke(&for_all).await;
    let seen = |who: (&'static str, &'static str)| {
        let s = &s;
        async move {
            let r = poll(&s.base, who, Some("0")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            polled_sets(&r)
                .iter()
                .filter_map(|(_, set)| revoked_jti(set))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seen(("rs-a", "rs-a-secret")).await, [jti_a.clone(), jti_all.clone()]);
    assert_eq!(
        seen(("rs-b", "rs-b-secret")).await,
        std::slice::from_ref(&jti_all),
        "not a's token"
    );
    assert_eq!(
        seen(API).await,
        std::slice::from_ref(&jti_all),
        "a resource server without an indicator is outside every audience"
    );
    // The stream filters the same way: b's stream, resumed from the start, skips a's event.
    let mut b = EventStream::open(&s.base, ("rs-b", "rs-b-secret"), Some("0")).await;
    let only = b.next(PROMPTLY).await.unwrap();
    assert_eq!(revoked_jti(&only.set()), Some(jti_all));
    assert!(b.next(Duration::from_millis(300)).await.is_none());

    // Only clients that may introspect may subscribe, with their credentials.
    let refused = poll(&s.base, ("demo-client", "demo-secret"), Some("0")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.json["error"], "invalid_client");
    let wrong = poll(&s.base, ("api-server", "wrong"), Some("0")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let anonymous = Reply::read(client().get(s.url("/oauth/revocations/stream")).send().await.unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    for bad in ["after=x", "after=1&after=2", "max=0"] {
        let r = Reply::read(
            client()
                .get(s.url(&format!("/oauth/revocations?{bad}")))
                .basic_auth(API.0, API.1)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
    }
    s.stop().await;
}

async fn refresh(s: &TestServer, token: &str) -> Reply {
    s.post_form(
        "/oauth/token",
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

#[actix_rt::test]
async fn grants_users_and_clients_are_named_as_introspection_names_them() {
    let s = start().await;
    let mut stream = EventStream::open(&s.base, API, None).await;
    let mut b = Browser::new(&s);

    // Refresh reuse revokes the grant: one session-revoked event naming its grant_id.
    let code = b.approve(&authorize_query("openid read", &[])).await["code"].clone();
    let first = s.exchange_code(&code, VERIFIER).await;
    let r0 = first.json["refresh_token"].as_str().unwrap().to_owned();
    let access = first.json["access_token"].as_str().unwrap().to_owned();
    let answer = s.introspect(&access).await;
    let grant_id = answer["grant_id"]
        .as_str()
        .expect("a code-flow token names its grant")
        .to_owned();
    let sub = answer["sub"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&s, &r0).await.status, StatusCode::OK);
    let reuse = refresh(&s, &r0).await;
    assert_eq!(reuse.json["error"], "invalid_grant");
    // One event per shard that held tokens of the grant, each naming it; on a loaded machine
    // the second may come late (the user's part below allows for it).
    let set = stream.next(PROMPTLY).await.expect("the grant's event").set();
    assert_eq!(event_of(&set).0, SESSION_REVOKED);
    assert_eq!(
        set["sub_id"],
        json!({"format": "complex", "session": {"format": "opaque", "id": grant_id}})
    );
    let at = event_of(&set).1["event_timestamp"].as_u64().unwrap();
    assert!(at >= answer["iat"].as_u64().unwrap());

    // A user's removal: every token of theirs, named by iss and sub.
    let r = s
        .admin_call(
            "POST",
            "/admin/users",
            Some(&json!({"username": "dora", "password": "dora-password-0123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut b = Browser::new(&s);
    let code = b
        .approve_as(&authorize_query("openid read", &[]), "dora", "dora-password-0123")
        .await["code"]
        .clone();
    let dora = s.exchange_code(&code, VERIFIER).await;
    let dora_sub = s.introspect(dora.json["access_token"].as_str().unwrap()).await["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(dora_sub, sub);
    let r = s.admin_call("DELETE", "/admin/users/dora", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The grant's event from another shard may still be on its way on a loaded machine: it
    // may come first, and names the grant as above.
    let grant_event = json!({"format": "complex", "session": {"format": "opaque", "id": grant_id}});
    let mut subjects = HashSet::new();
    while let Some(e) = stream.next(Duration::from_millis(500)).await {
        let set = e.set();
        assert_eq!(event_of(&set).0, SESSION_REVOKED);
        if set["sub_id"] == grant_event {
            continue;
        }
        assert_eq!(set["sub_id"]["format"], "iss_sub", "{set}");
        assert_eq!(set["sub_id"]["iss"], set["iss"]);
        subjects.insert(set["sub_id"]["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        subjects,
        HashSet::from([dora_sub]),
        "one or more events, all about dora"
    );

    // Every token of a client: named by its client_id.
    s.issue("read").await;
    let r = s.admin_call("POST", "/admin/clients/demo-client/revoke", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let client_event = json!({"format": "complex", "application": {"format": "opaque", "id": "demo-client"}});
    loop {
        let set = stream.next(PROMPTLY).await.expect("the client's event").set();
        if set["sub_id"] == client_event {
            break;
        }
        // Only a late copy of dora's event from another shard may come before it.
        assert_eq!(
            set["sub_id"]["sub"].as_str(),
            subjects.iter().next().map(String::as_str),
            "{set}"
        );
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_position_the_log_cannot_serve_is_a_reset() {
    let s = TestServer::start("feed_log_max_events = 2").await;
    let tokens: Vec<String> = futures_util::future::join_all((0..4).map(|_| s.issue("read"))).await;
    for t in &tokens {
        s.revoke(t).await;
    }
    let behind = poll(&s.base, API, Some("0")).await;
    let sets = polled_sets(&behind);
    assert_eq!(sets.len(), 1, "{}", behind.text);
    assert_eq!(event_of(&sets[0].1).0, "urn:tessera:secevent:feed-reset");
    let last = behind.json["last"].as_str().unwrap().to_owned();
    assert_eq!(sets[0].0.to_string(), last);
    assert!(
        polled_sets(&poll(&s.base, API, Some(&last)).await).is_empty(),
        "caught up"
    );

    let mut stream = EventStream::open(&s.base, API, Some("999999999999")).await;
    let reset = stream.next(PROMPTLY).await.unwrap();
    assert_eq!(reset.event, "reset", "a position above the head is another log's");
    assert_eq!(reset.id.as_deref(), Some(last.as_str()));
    s.stop().await;
}

async fn jti_at(base: &str, token: &str) -> String {
    let mut r = client()
        .post(format!("{base}/oauth/introspect"))
        .basic_auth(API.0, API.1)
        .send_form(&[("token", token)])
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["jti"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn an_acknowledged_revocation_is_in_the_log_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    common::write_config(dir.path(), 2, 2, "id_token_alg = \"ES256\"");
    let (mut tessera, base) = common::spawn_tessera(dir.path()).await;
    let tokens: Vec<String> = futures_util::future::join_all((0..40).map(|_| issue_at(&base))).await;
    let mut jtis = Vec::new();
    for t in &tokens {
        jtis.push(jti_at(&base, t).await);
    }
    futures_util::future::join_all(tokens.iter().map(|t| revoke_at(&base, t))).await;
    // Killed the moment the last acknowledgement arrived: no flush of its own.
    tessera.kill();
    let (_again, base) = common::spawn_tessera(dir.path()).await;
    let r = poll(&base, API, Some("0")).await;
    let found: HashSet<String> = polled_sets(&r).iter().filter_map(|(_, s)| revoked_jti(s)).collect();
    assert_eq!(
        found,
        jtis.into_iter().collect::<HashSet<_>>(),
        "every acknowledged revocation"
    );
    let head: u64 = r.json["last"].as_str().unwrap().parse().unwrap();
    let t = issue_at(&base).await;
    let jti = jti_at(&base, &t).await;
    revoke_at(&base, &t).await;
    let next = poll(&base, API, Some(&head.to_string())).await;
    let sets = polled_sets(&next);
    assert_eq!(sets.len(), 1, "numbers after a restart follow the ones before");
    assert!(sets[0].0 > head);
    assert_eq!(revoked_jti(&sets[0].1), Some(jti));
}

async fn send(request: awc::SendClientRequest) -> Reply {
    Reply::read(request.await.unwrap()).await
}

#[actix_rt::test]
async fn a_batch_answers_each_token_as_it_would_be_answered_alone() {
    let s = start().await;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        ("resource", "https://a.example"),
    ];
    let for_a = s.post_form("/oauth/token", DEMO, &form).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    form.pop();
    let for_all = s.post_form("/oauth/token", DEMO, &form).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = s.issue("read").await;
    s.revoke(&revoked).await;
    let tokens = [for_a.as_str(), for_all.as_str(), revoked.as_str(), "tsa_made_up", ""];
    for who in [("rs-a", "rs-a-secret"), ("rs-b", "rs-b-secret"), API] {
        let mut alone = Vec::new();
        for t in tokens {
            let r = s.post_form("/oauth/introspect", Some(who), &[("token", t)]).await;
            alone.push(r.json);
        }
        let pairs: Vec<(&str, &str)> = tokens.iter().map(|t| ("token", *t)).collect();
        let as_form = s.post_form("/oauth/introspect/batch", Some(who), &pairs).await;
        assert_eq!(as_form.status, StatusCode::OK, "{}", as_form.text);
        assert_eq!(as_form.header("cache-control"), Some("no-store"));
        let as_json = send(
            client()
                .post(s.url("/oauth/introspect/batch"))
                .basic_auth(who.0, who.1)
                .send_json(&json!({ "tokens": tokens })),
        )
        .await;
        for answers in [&as_form.json["results"], &as_json.json["results"]] {
            // Cache hints may differ by a second between calls; the rest may not.
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("cache_max_age_with_feed");
                }
                v
            };
            let got: Vec<Value> = answers.as_array().unwrap().iter().map(strip).collect();
            let want: Vec<Value> = alone.iter().map(strip).collect();
            assert_eq!(got, want, "as {}", who.0);
        }
    }
    let active = |r: &Reply| -> Vec<bool> {
        r.json["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["active"] == true)
            .collect()
    };
    let pairs: Vec<(&str, &str)> = tokens.iter().map(|t| ("token", *t)).collect();
    let at_b = s
        .post_form("/oauth/introspect/batch", Some(("rs-b", "rs-b-secret")), &pairs)
        .await;
    assert_eq!(
        active(&at_b),
        [false, true, false, false, false],
        "a's token stays hidden from b"
    );

    // Bounded, and refused clearly.
    let many: Vec<(&str, &str)> = (0..51).map(|_| ("token", "tsa_x")).collect();
    let refusals = [
        s.post_form("/oauth/introspect/batch", Some(API), &many).await,
        s.post_form("/oauth/introspect/batch", Some(API), &[]).await,
        send(
            client()
                .post(s.url("/oauth/introspect/batch"))
                .basic_auth(API.0, API.1)
                .content_type("application/json")
                .send_body("{\"tokens\": 7}"),
        )
        .await,
    ];
    for r in refusals {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
    }
    let not_allowed = s.post_form("/oauth/introspect/batch", DEMO, &pairs).await;
    assert_eq!(
        not_allowed.status,
        StatusCode::UNAUTHORIZED,
        "demo-client may not introspect"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn an_introspection_answer_comes_as_a_signed_jwt_when_asked() {
    let s = start().await;
    let meta = s.get("/.well-known/openid-configuration").await.json;
    assert!(meta["introspection_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES256")));
    let token = s.issue("read").await;
    let plain = s.introspect(&token).await;
    let mut r = client()
        .post(s.url("/oauth/introspect"))
        .basic_auth(API.0, API.1)
        .insert_header(("accept", "application/token-introspection+jwt"))
        .send_form(&[("token", token.as_str())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers().get("content-type").unwrap(),
        "application/token-introspection+jwt"
    );
    let jwt = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    assert!(verifies_es256_typed(&jwt, &jwks(&s).await, "token-introspection+jwt"));
    let claims = set_payload(&jwt);
    assert_eq!(claims["iss"], meta["issuer"]);
    assert_eq!(claims["aud"], "api-server");
    assert_eq!(claims["token_introspection"]["jti"], plain["jti"]);
    assert_eq!(claims["token_introspection"]["active"], true);
    assert_eq!(claims["token_introspection"]["client_id"], "demo-client");
    let mut inactive = client()
        .post(s.url("/oauth/introspect"))
        .basic_auth(API.0, API.1)
        .insert_header(("accept", "application/json, application/token-introspection+jwt;q=0.9"))
        .send_form(&[("token", "tsa_unknown")])
        .await
        .unwrap();
    let jwt = String::from_utf8(inactive.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(set_payload(&jwt)["token_introspection"], json!({"active": false}));
    s.stop().await;
}
