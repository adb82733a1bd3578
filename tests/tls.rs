//! https on the public listener: a self-signed certificate made here, a client that trusts only
//! it, HSTS on https answers and not on http, an https issuer, and the `__Host-` cookies.

use crate::common;

use std::time::Duration;

use awc::http::StatusCode;
use common::{Reply, TestServer};
use tessera::config::RawConfig;

/// A server on `127.0.0.1` with a fresh self-signed certificate for that address, and a client
/// that trusts that certificate alone.
async fn https_server(cert_dir: &std::path::Path) -> (TestServer, reqwest::Client) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = cert_dir.join("cert.pem");
    let key = cert_dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let s = TestServer::start(&format!("tls_cert = {cert:?}\ntls_key = {key:?}")).await;
    let trusted = reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([trusted])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (s, client)
}

#[actix_rt::test]
async fn https_answers_with_hsts_and_an_https_issuer() {
    let certs = tempfile::tempdir().unwrap();
    let (s, https) = https_server(certs.path()).await;
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);

    let health = Reply::from_reqwest(https.get(s.url("/health")).send().await.unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.header("strict-transport-security"), Some("max-age=31536000"));

    let meta = Reply::from_reqwest(
        https
            .get(s.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        meta.json["issuer"],
        s.base.as_str(),
        "the derived issuer is https://<addr>"
    );
    assert!(meta.header("strict-transport-security").is_some());
    let admin = tessera::datadir::read_admin(&s.data_dir()).unwrap();
    assert_eq!(admin.url, s.base, "admin.json names the https URL");

    // The login page sets the CSRF cookie under its __Host- name, Secure, Path=/, no Domain.
    let query = common::browser::authorize_query("openid", &[]);
    let login = https
        .get(s.url(&format!("/oauth/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let set_cookie: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let csrf = set_cookie
        .iter()
        .find(|c| c.starts_with("__Host-tessera_csrf="))
        .unwrap_or_else(|| panic!("no __Host- CSRF cookie in {set_cookie:?}"));
    assert!(csrf.contains("Secure") && csrf.contains("Path=/"), "{csrf}");
    assert!(!csrf.contains("Domain"), "{csrf}");

    // Plain http to the https port is no TLS handshake: it fails instead of being served.
    let plain = common::client()
        .get(s.url("/health").replacen("https://", "http://", 1))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    s.stop().await;
}

#[actix_rt::test]
async fn plain_http_has_no_hsts_and_plain_cookie_names() {
    let s = TestServer::start("").await;
    let health = s.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.header("strict-transport-security").is_none());
    let query = common::browser::authorize_query("openid", &[]);
    let login = s.get(&format!("/oauth/authorize?{query}")).await;
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("tessera_csrf=") && !cookie.contains("Secure"),
        "{cookie}"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_missing_certificate_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nid_token_alg = \"ES256\"\ntls_cert = {:?}\ntls_key = {:?}",
        dir.path().join("data"),
        dir.path().join("missing-cert.pem"),
        dir.path().join("missing-key.pem"),
    );
    let settings = RawConfig::from_toml(&toml).unwrap().validate().unwrap();
    let err = match tessera::server::start(settings).await {
        Ok(_) => panic!("started without its certificate"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("tls_cert") && err.contains("missing-cert.pem"), "{err}");
}
