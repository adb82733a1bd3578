//! Malformed and hostile requests: each gets a clear RFC 6749 §5.2 error or a plain HTTP error,
//! never a 500 and never a panic.

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::browser::{authorize_query, query_of};
use common::{client, Reply, TestServer};

#[actix_rt::test]
async fn wrong_content_type_and_malformed_bodies_are_invalid_request() {
    let s = TestServer::start("").await;
    let json = client()
        .post(s.url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .content_type("application/json")
        .send_body(r#"{"grant_type":"client_credentials"}"#)
        .await
        .unwrap();
    let r = Reply::read(json).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let repeated = client()
        .post(s.url("/oauth/introspect"))
        .basic_auth("api-server", "api-secret")
        .content_type("application/x-www-form-urlencoded")
        .send_body("token=a&token=b")
        .await
        .unwrap();
    let r = Reply::read(repeated).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a repeated parameter is refused (RFC 6749 §3.2)"
    );
    assert_eq!(r.json["error"], "invalid_request");

    let missing = s
        .post_form(
            "/oauth/introspect",
            Some(("api-server", "api-secret")),
            &[("nottoken", "x")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json["error"], "invalid_request");

    let no_grant = s
        .post_form("/oauth/token", Some(("demo-client", "demo-secret")), &[])
        .await;
    assert_eq!(no_grant.json["error"], "invalid_request");
    s.stop().await;
}

#[actix_rt::test]
async fn oversized_bodies_are_413() {
    let s = TestServer::start("").await;
    let huge = "x".repeat(64 * 1024);
    let r = s
        .post_form(
            "/oauth/introspect",
            Some(("api-server", "api-secret")),
            &[("token", &huge)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json["error"], "invalid_request");
    s.stop().await;
}

#[actix_rt::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let s = TestServer::start("").await;
    let r = s.get("/oauth/introspect").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = Reply::read(client().delete(s.url("/health")).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = s.get("/no/such/path").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"], "not_found");
    s.stop().await;
}

#[actix_rt::test]
async fn garbage_never_yields_a_server_error() {
    let s = TestServer::start("").await;
    let bodies: &[&[u8]] = &[
        b"",
        b"=",
        b"&&&&",
        b"token=%ZZ%",
        b"token=%FF%FE",
        b"\xff\xfe\x00\x01",
        b"grant_type=client_credentials&scope=%00%01",
        b"grant_type=client_credentials&scope=read%20write%20admin",
        b"token=a&client_id=api-server&client_secret=api-secret&client_secret=x",
    ];
    let headers: &[Option<&str>] = &[
        None,
        Some("Basic"),
        Some("Basic !!!"),
        Some("Bearer x"),
        Some("Basic YTpi"),
        Some("basic ZGVtby1jbGllbnQ6"),
    ];
    for path in ["/oauth/token", "/oauth/introspect", "/oauth/revoke"] {
        for body in bodies {
            for auth in headers {
                let mut req = client()
                    .post(s.url(path))
                    .content_type("application/x-www-form-urlencoded");
                if let Some(a) = auth {
                    req = req.insert_header(("Authorization", *a));
                }
                let r = Reply::read(req.send_body(body.to_vec()).await.unwrap()).await;
                assert!(
                    r.status.is_client_error() || r.status == StatusCode::OK,
                    "{path} {auth:?} {:?} gave {}",
                    String::from_utf8_lossy(body),
                    r.status
                );
                if r.status.is_client_error() {
                    assert!(r.json["error"].is_string(), "error body is OAuth JSON: {}", r.text);
                }
            }
        }
    }
    s.stop().await;
}

#[actix_rt::test]
async fn mixing_authentication_methods_is_refused() {
    let s = TestServer::start("").await;
    let r = s
        .post_form(
            "/oauth/token",
            Some(("demo-client", "demo-secret")),
            &[("grant_type", "client_credentials"), ("client_secret", "demo-secret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    s.stop().await;
}

// ---- Bounded input (request bodies, queries, headers, slow clients) ----

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Sends `head` on a fresh connection, then `trickle` one byte at a time every `every`, and
/// returns what the server answered (until it closed or 10 s passed) and when.
fn raw_exchange(addr: &str, head: &[u8], trickle: &[u8], every: Duration) -> (String, Duration) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    // The server may refuse and close before the whole head is written; what it answered is
    // read below either way.
    let _ = c.write_all(head);
    if !trickle.is_empty() {
        let mut writer = c.try_clone().unwrap();
        let trickle = trickle.to_vec();
        std::thread::spawn(move || {
            for b in trickle {
                std::thread::sleep(every);
                if writer.write_all(&[b]).is_err() {
                    return;
                }
            }
        });
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[actix_rt::test]
async fn oversized_bodies_are_413_on_every_endpoint_that_reads_one() {
    let s = TestServer::start("").await;
    let huge = "x".repeat(64 * 1024);
    for path in ["/oauth/login", "/oauth/consent"] {
        let r = Reply::read(
            client()
                .post(s.url(path))
                .content_type("application/x-www-form-urlencoded")
                .send_body(format!("csrf=a&username={huge}"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{path}: a page"
        );
        assert!(r.text.contains("too large"), "{path}: {}", r.text);
    }
    let r = Reply::read(
        client()
            .post(s.url("/oauth/userinfo"))
            .content_type("application/x-www-form-urlencoded")
            .send_body(format!("access_token={huge}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json["error"], "invalid_request");

    // A declared length over the limit is refused at once, before any body is sent.
    let a = addr(&s);
    let (answer, _) = actix_rt::task::spawn_blocking(move || {
        raw_exchange(
            &a,
            b"POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100000000\r\nConnection: close\r\n\r\n",
            b"",
            Duration::ZERO,
        )
    })
    .await
    .unwrap();
    assert!(status_line(&answer).contains(" 413 "), "{answer}");
    s.stop().await;
}

#[actix_rt::test]
async fn repeated_and_too_many_parameters_are_refused_in_forms_and_pages() {
    let s = TestServer::start("").await;
    let many: Vec<String> = (0..100).map(|i| format!("p{i}=v")).collect();
    let r = Reply::read(
        client()
            .post(s.url("/oauth/introspect"))
            .basic_auth("api-server", "api-secret")
            .content_type("application/x-www-form-urlencoded")
            .send_body(format!("token=a&{}", many.join("&")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    // A repeated parameter the endpoint does not even read is refused too (RFC 6749 §3.2).
    let r = Reply::read(
        client()
            .post(s.url("/oauth/token"))
            .basic_auth("demo-client", "demo-secret")
            .content_type("application/x-www-form-urlencoded")
            .send_body("grant_type=client_credentials&unknown=1&unknown=2")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    // On the authorization endpoint a repeat is an error page, never a redirect.
    let query = format!("{}&client_id=demo-client", authorize_query("openid", &[]));
    let r = s.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.header("location").is_none());
    assert!(r.text.contains("repeats a parameter"), "{}", r.text);
    s.stop().await;
}

#[actix_rt::test]
async fn hostile_scopes_on_authorize_redirect_with_invalid_scope() {
    // A query bound as large as actix-http's own limit on the request target (64 KiB, the
    // `http` crate's longest URI) allows, so that the scope cap is what refuses these requests.
    let s = TestServer::start("max_query_bytes = 65536").await;
    // 15,000 distinct three-character tokens (60 KB): more do not fit a request target, and
    // 50,000 need more than the 128 KiB head actix-http accepts at all (below).
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
    let mut distinct = Vec::with_capacity(20_000);
    'outer: for a in &alphabet {
        for b in &alphabet {
            for c in &alphabet {
                distinct.push(format!("{a}{b}{c}"));
                if distinct.len() == 15_000 {
                    break 'outer;
                }
            }
        }
    }
    // These URIs are longer than awc (the `http` crate) builds, so they go over a raw socket.
    let get = |query: String| {
        let a = addr(&s);
        actix_rt::task::spawn_blocking(move || {
            let head = format!("GET /oauth/authorize?{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            raw_exchange(&a, head.as_bytes(), b"", Duration::ZERO).0
        })
    };
    for scope in [distinct.join(" "), "x".repeat(60 * 1024)] {
        let query = authorize_query(&scope, &[]);
        assert!(query.len() < 64 * 1024 - 100);
        let answer = get(query).await.unwrap();
        assert!(status_line(&answer).contains(" 303 "), "{answer}");
        let location = answer
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .expect("a Location header");
        assert!(location.starts_with(common::browser::REDIRECT), "{location}");
        let q = query_of(location);
        assert_eq!(q["error"], "invalid_scope");
        assert_eq!(q["state"], "st-123");
    }
    // One 100 KiB token: a request target over 64 KiB, which actix-http refuses (400) itself.
    let answer = get(authorize_query(&"x".repeat(100 * 1024), &[])).await.unwrap();
    assert!(status_line(&answer).contains(" 400 "), "{answer}");
    // 50,000 distinct tokens: over actix-http's head limit, refused (431, or closed while the
    // client still writes) before Tessera sees it.
    let mut fifty: Vec<String> = distinct.clone();
    fifty.extend((0..30_000).map(|i| format!("t{i}")));
    let answer = get(authorize_query(&fifty.join(" "), &[])).await.unwrap();
    assert!(answer.is_empty() || status_line(&answer).contains(" 431 "), "{answer}");
    assert!(s.get("/health").await.status.is_success(), "the server is unharmed");
    s.stop().await;
}

#[actix_rt::test]
async fn long_queries_and_large_headers_are_refused() {
    let s = TestServer::start("").await;
    // The default bound is 8 KiB: the authorization endpoint answers with its error page.
    let long_state = "s".repeat(9 * 1024);
    let query = authorize_query("openid", &[("state", &long_state)]);
    let r = s.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert!(r.header("location").is_none());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = s.get(&format!("/oauth/logout?state={long_state}")).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // An OAuth endpoint answers in JSON.
    let r = Reply::read(
        client()
            .post(s.url(&format!("/oauth/introspect?x={long_state}")))
            .basic_auth("api-server", "api-secret")
            .send_form(&[("token", "a")])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.json["error"], "invalid_request");

    // Headers: too many, and too many bytes (each under actix-http's own limits).
    let mut many = client().get(s.url("/health"));
    for i in 0..80 {
        many = many.insert_header((format!("x-h{i}"), "v"));
    }
    let r = Reply::read(many.send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.json["error"], "invalid_request");
    let r = Reply::read(
        client()
            .get(s.url("/oauth/jwks"))
            .insert_header(("x-big", "b".repeat(20 * 1024)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(s.get("/health").await.status.is_success());
    s.stop().await;
}

#[actix_rt::test]
async fn a_stalled_head_is_cut_off_at_the_request_timeout() {
    let s = TestServer::start("request_timeout_ms = 300").await;
    let a = addr(&s);
    let (answer, took) = actix_rt::task::spawn_blocking(move || {
        raw_exchange(&a, b"GET /health HTTP/1.1\r\nHost: t\r\nX-Half", b"", Duration::ZERO)
    })
    .await
    .unwrap();
    // actix answers 408 and closes, or closes; either way long before the client's 10 s.
    assert!(answer.is_empty() || status_line(&answer).contains(" 408 "), "{answer}");
    assert!(took < Duration::from_secs(5), "the stalled connection lived {took:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_trickling_body_gets_408_while_other_clients_are_served() {
    let s = TestServer::start("request_timeout_ms = 500").await;
    let a = addr(&s);
    // 100 bytes announced, one sent every 100 ms: 10 s to finish, were it waited for.
    let slow = actix_rt::task::spawn_blocking(move || {
        raw_exchange(
            &a,
            b"POST /oauth/introspect HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YXBpLXNlcnZlcjphcGktc2VjcmV0\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
            &[b'a'; 100],
            Duration::from_millis(100),
        )
    });
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile, on another connection, a normal request is answered.
    let token = s.issue("read").await;
    assert_eq!(s.introspect(&token).await["active"], true);
    let (answer, took) = slow.await.unwrap();
    assert!(status_line(&answer).contains(" 408 "), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "the slow body was waited on for {took:?}"
    );
    s.stop().await;
}
