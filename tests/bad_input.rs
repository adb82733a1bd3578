//! Malformed and hostile requests: each gets a clear RFC 6749 §5.2 error or a plain HTTP error,
//! never a 500 and never a panic.

mod common;

use awc::http::StatusCode;
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
