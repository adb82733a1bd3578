//! Revocation follows the account: removing a user or changing their password, removing a client,
//! and an administrator's "revoke all" take every token on every shard, durably; config-owned
//! entries are refused to the admin API and the CLI; a data-subject export.

use crate::common;

use awc::http::StatusCode;
use common::browser::{self, Browser};
use common::{client, Reply, TestServer};
use serde_json::{json, Value};

/// A call to the admin API with the credential from the admin file.
async fn admin(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> Reply {
    s.admin_call(method, path, body.as_ref()).await
}

/// A full sign-in of `user` at demo-client with offline access: (access token, refresh token).
async fn sign_in(s: &TestServer, b: &mut Browser<'_>, user: &str, password: &str) -> (String, String) {
    let query = browser::authorize_query("openid read offline_access", &[]);
    let code = b.approve_as(&query, user, password).await["code"].clone();
    let r = s.exchange_code(&code, browser::VERIFIER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (
        r.json["access_token"].as_str().unwrap().to_owned(),
        r.json["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(s: &TestServer, refresh_token: &str) -> Reply {
    s.post_form(
        "/oauth/token",
        Some(("demo-client", "demo-secret")),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
    )
    .await
}

async fn active(s: &TestServer, token: &str) -> bool {
    s.introspect(token).await["active"] == true
}

#[actix_rt::test]
async fn a_new_password_or_a_removal_revokes_every_token_of_the_user() {
    let s = TestServer::start("").await;
    let bob = json!({"username": "bob", "password": "bobs-password-1"});
    assert_eq!(
        admin(&s, "POST", "/admin/users", Some(bob)).await.status,
        StatusCode::CREATED
    );

    // Two grants, so that bob's tokens lie on both shards (four tokens over two shards).
    let mut b = Browser::new(&s);
    let first = sign_in(&s, &mut b, "bob", "bobs-password-1").await;
    let second = sign_in(&s, &mut Browser::new(&s), "bob", "bobs-password-1").await;
    let alices = sign_in(&s, &mut Browser::new(&s), "alice", "wonderland-42").await;
    for t in [&first.0, &first.1, &second.0, &alices.0] {
        assert!(active(&s, t).await);
    }

    // The same password again changes nothing.
    let same = json!({"username": "bob", "password": "bobs-password-1", "email": "bob@example.com"});
    assert_eq!(
        admin(&s, "POST", "/admin/users", Some(same)).await.status,
        StatusCode::CREATED
    );
    assert!(active(&s, &first.0).await, "an unchanged password revokes nothing");

    let changed = json!({"username": "bob", "password": "bobs-password-2"});
    assert_eq!(
        admin(&s, "POST", "/admin/users", Some(changed)).await.status,
        StatusCode::CREATED
    );
    for t in [&first.0, &first.1, &second.0, &second.1] {
        assert!(!active(&s, t).await, "bob's tokens are revoked by the new password");
    }
    let r = refresh(&s, &second.1).await;
    assert_eq!(r.json["error"], "invalid_grant", "{}", r.text);
    assert!(active(&s, &alices.0).await, "another user's tokens stay");
    // The browser session of the old password ended: the authorize request asks to sign in.
    let page = b
        .get(&format!("/oauth/authorize?{}", browser::authorize_query("openid", &[])))
        .await;
    assert!(page.text.contains("name=\"password\""), "{}", page.text);

    let fresh = sign_in(&s, &mut Browser::new(&s), "bob", "bobs-password-2").await;
    assert!(active(&s, &fresh.0).await);
    let removed = admin(&s, "DELETE", "/admin/users/bob", None).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(removed.json["tokens"], 2, "{}", removed.text);
    assert!(!active(&s, &fresh.0).await && !active(&s, &fresh.1).await);
    assert_eq!(refresh(&s, &fresh.1).await.json["error"], "invalid_grant");
    assert_eq!(
        admin(&s, "DELETE", "/admin/users/bob", None).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_removed_client_loses_its_tokens_and_consents_and_comes_back_clean() {
    let s = TestServer::start("").await;
    let spec = json!({
        "client_id": "temp-app",
        "client_secret": "temp-secret-1",
        "redirect_uris": [browser::REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes": ["openid", "read", "offline_access"],
    });
    assert_eq!(
        admin(&s, "POST", "/admin/clients", Some(spec.clone())).await.status,
        StatusCode::CREATED
    );
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let r = s
            .post_form(
                "/oauth/token",
                Some(("temp-app", "temp-secret-1")),
                &[("grant_type", "client_credentials"), ("scope", "read")],
            )
            .await;
        tokens.push(r.json["access_token"].as_str().unwrap().to_owned());
    }
    let query = browser::authorize_query("openid read offline_access", &[("client_id", "temp-app")]);
    let mut b = Browser::new(&s);
    let code = b.approve(&query).await["code"].clone();
    let r = s
        .post_form(
            "/oauth/token",
            Some(("temp-app", "temp-secret-1")),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", browser::REDIRECT),
                ("code_verifier", browser::VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokens.push(r.json["access_token"].as_str().unwrap().to_owned());
    tokens.push(r.json["refresh_token"].as_str().unwrap().to_owned());
    let demo = s.issue("read").await;
    for t in &tokens {
        assert!(active(&s, t).await);
    }

    let removed = admin(&s, "DELETE", "/admin/clients/temp-app", None).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(removed.json["tokens"], 8, "{}", removed.text);
    for t in &tokens {
        assert!(!active(&s, t).await, "the removed client's tokens are revoked");
    }
    assert!(active(&s, &demo).await, "another client's token stays");

    // Registered again under the same id: nothing of the old one is inherited.
    assert_eq!(
        admin(&s, "POST", "/admin/clients", Some(spec)).await.status,
        StatusCode::CREATED
    );
    for t in &tokens {
        assert!(!active(&s, t).await);
    }
    let page = b.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "the consent is asked again: {}", page.text);
    assert!(page.text.contains("Allow"), "{}", page.text);
    s.stop().await;
}

#[actix_rt::test]
async fn revoke_all_of_a_user_or_a_client_keeps_the_account() {
    let s = TestServer::start("").await;
    let alices = sign_in(&s, &mut Browser::new(&s), "alice", "wonderland-42").await;
    let service = s.issue("read").await;
    let r = admin(&s, "POST", "/admin/users/alice/revoke", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["tokens"], 2, "{}", r.text);
    assert!(!active(&s, &alices.0).await && !active(&s, &alices.1).await);
    assert!(
        active(&s, &service).await,
        "a user's revocation leaves client tokens alone"
    );
    let again = sign_in(&s, &mut Browser::new(&s), "alice", "wonderland-42").await;
    assert!(active(&s, &again.0).await, "the user can sign in again");

    let r = admin(&s, "POST", "/admin/clients/demo-client/revoke", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!active(&s, &service).await && !active(&s, &again.0).await);
    assert!(
        active(&s, &s.issue("read").await).await,
        "the client can get tokens again"
    );
    assert_eq!(
        admin(&s, "POST", "/admin/users/nobody/revoke", None).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[actix_rt::test]
async fn config_owned_entries_are_refused_and_an_export_holds_no_credential() {
    let s = TestServer::start("").await;
    let (access, refresh_token) = sign_in(&s, &mut Browser::new(&s), "alice", "wonderland-42").await;
    let r = admin(
        &s,
        "POST",
        "/admin/users",
        Some(json!({"username": "alice", "password": "another-password"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(
        r.json["error_description"].as_str().unwrap().contains("config file"),
        "{}",
        r.text
    );
    assert_eq!(
        admin(&s, "DELETE", "/admin/clients/demo-client", None).await.status,
        StatusCode::CONFLICT
    );
    assert!(active(&s, &access).await, "a refused change changes nothing");

    let export = admin(&s, "GET", "/admin/users/alice/export", None).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let e = &export.json;
    assert_eq!(e["profile"]["username"], "alice");
    assert_eq!(e["consents"][0]["client_id"], "demo-client");
    let grants = e["grants"]["demo-client"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{}", export.text);
    assert_eq!(
        (grants[0]["access_tokens"].clone(), grants[0]["refresh_tokens"].clone()),
        (json!(1), json!(1))
    );
    assert!(!e["audit_events"].as_array().unwrap().is_empty(), "{}", export.text);
    for secret in [access.as_str(), refresh_token.as_str(), "wonderland-42", "$argon2"] {
        assert!(!export.text.contains(secret), "the export holds a credential");
    }
    s.stop().await;
}

fn tessera(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::cli::run(config, args, None)
}

/// On a stopped server the CLI goes through the same operations: a config-owned user is refused
/// with a clear message, others are managed, and an export is JSON.
#[test]
fn the_cli_on_a_stopped_server_uses_the_same_door() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nshards = 2\nid_token_alg = \"ES256\"\n\
             [[users]]\nusername = \"alice\"\npassword = \"wonderland-42\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = tessera(&config, &["user", "passwd", "alice", "--password", "looking-glass-1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("defined in the config file"), "{stderr}");
    let out = tessera(&config, &["user", "add", "carol", "--password", "carols-password"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tessera(&config, &["user", "export", "carol"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(export["profile"]["username"], "carol");
    let events = export["audit_events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "user_created" && e["actor"] == "cli"),
        "{export}"
    );
    let out = tessera(&config, &["user", "remove", "carol"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tessera(&config, &["user", "export", "carol"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
}

/// A client's removal is durable like every revocation: killed with SIGKILL right after the
/// removal was acknowledged, the server restarts with none of its tokens active.
#[actix_rt::test]
async fn a_removal_acknowledged_before_a_crash_stays_done() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nshards = 2\nid_token_alg = \"ES256\"\n{}",
            dir.path().join("data"),
            common::CLIENTS
        ),
    )
    .unwrap();
    let (mut server, base) = common::spawn_tessera(dir.path()).await;
    let add = [
        "client",
        "add",
        "doomed-app",
        "--secret",
        "doomed-secret-1",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    ];
    let out = tessera(&config, &add);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let http = client();
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let mut r = http
            .post(format!("{base}/oauth/token"))
            .basic_auth("doomed-app", "doomed-secret-1")
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let out = tessera(&config, &["client", "remove", "doomed-app"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("20 tokens"));
    server.kill();

    let (_server, base) = common::spawn_tessera(dir.path()).await;
    for token in &tokens {
        let mut r = http
            .post(format!("{base}/oauth/introspect"))
            .basic_auth("api-server", "api-secret")
            .send_form(&[("token", token.as_str())])
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["active"], false, "a revoked token came back after the crash");
    }
}
