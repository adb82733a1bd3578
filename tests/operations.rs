//! Operations surface: health, readiness, Prometheus metrics, the admin API, and the CLI.

use crate::common;

use std::process::Command;

use awc::http::StatusCode;
use std::os::unix::fs::PermissionsExt;

use common::{admin_request, client, Reply, ServerProcess, TestServer};

#[actix_rt::test]
async fn health_and_readiness() {
    let s = TestServer::start("").await;
    let h = s.get("/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json["status"], "ok");
    let r = s.get("/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "ready");
    s.stop().await;
}

#[actix_rt::test]
async fn metrics_expose_every_documented_series_after_traffic() {
    let s = TestServer::start(common::EVERY_METRIC_SETTINGS).await;
    let token = common::exercise_every_metric(&s).await;
    let m = s.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    for name in tessera::metrics::ALL {
        assert!(m.text.contains(name), "{name} missing from /metrics");
    }
    assert!(m
        .text
        .contains(r#"tessera_http_requests_total{route="/oauth/introspect",status="200"}"#));
    assert!(m
        .text
        .contains(r#"tessera_http_requests_total{route="/oauth/token",status="405"}"#));
    assert!(m
        .text
        .contains(r#"tessera_http_requests_total{route="unmatched",status="404"}"#));
    assert!(m.text.contains(r#"tessera_introspections_total{result="active"}"#));
    assert!(m.text.contains(r#"tessera_introspections_total{result="inactive"}"#));
    assert!(
        m.text.contains("tessera_flush_batch_size_bucket"),
        "flush batch size is a histogram"
    );
    assert!(m.text.contains(r#"tessera_shard_mailbox_depth{shard="1"}"#));
    assert!(!m.text.contains(&token), "no token in metrics");
    s.stop().await;
}

/// Two shards on one shared thread and two shards on a thread each must behave alike: placement
/// changes which thread runs an actor, never which actor owns a token.
#[actix_rt::test]
async fn shards_serve_alike_on_a_shared_thread_and_on_their_own() {
    for threads in [1, 2] {
        let s = TestServer::start(&format!("shard_threads = {threads}")).await;
        // 40 tokens land on both shards except with probability 2^-39.
        let mut tokens = Vec::new();
        for _ in 0..40 {
            tokens.push(s.issue("read").await);
        }
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(s.introspect(token).await["active"], true, "threads={threads} token {i}");
        }
        for token in tokens.iter().step_by(2) {
            let r = s
                .post_form(
                    "/oauth/revoke",
                    Some(("demo-client", "demo-secret")),
                    &[("token", token)],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
        }
        for (i, token) in tokens.iter().enumerate() {
            let expect = i % 2 == 1;
            assert_eq!(
                s.introspect(token).await["active"],
                expect,
                "threads={threads} token {i}"
            );
        }
        assert_eq!(s.stored_tokens(), 20, "threads={threads}");
        assert_eq!(s.get("/ready").await.status, StatusCode::OK);
        s.stop().await;
    }
}

#[actix_rt::test]
async fn admin_api_requires_the_credential_from_the_admin_file() {
    let s = TestServer::start("").await;
    let admin = tessera::datadir::read_admin(&s.data_dir()).unwrap();
    assert_eq!(admin.url, s.base);
    assert_eq!(admin.admin, s.admin);
    let socket = s
        .admin
        .strip_prefix("unix:")
        .expect("the admin API is on a Unix socket by default");
    assert_eq!(
        std::path::Path::new(socket),
        s.data_dir().canonicalize().unwrap().join("admin.sock")
    );
    let mode = std::fs::metadata(socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the server's user may connect to the socket");

    // Not on the public listener, not even with the credential.
    for path in ["/admin/clients", "/admin/users", "/admin/clients/demo-client"] {
        assert_eq!(s.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let public = client()
        .post(s.url("/admin/keys/rotate"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);

    let none = admin_request(&s.admin, "GET", "/admin/clients", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = admin_request(&s.admin, "GET", "/admin/clients", Some("tsadm_wrong"), None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = s.admin_call("GET", "/admin/clients", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json.as_array().unwrap().len(), 3);
    assert!(
        !ok.text.contains("secret\""),
        "no secret or digest in the listing: {}",
        ok.text
    );
    let body = serde_json::json!({"client_id": "x y", "client_secret": "long-enough"});
    let bad = s.admin_call("POST", "/admin/clients", Some(&body)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json["error"], "invalid_request");
    assert_eq!(
        s.admin_call("GET", "/oauth/token", None).await.status,
        StatusCode::NOT_FOUND,
        "the admin listener serves the admin API only"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn admin_bind_serves_the_admin_api_over_tcp_with_the_credential() {
    let s = TestServer::start("admin_bind = \"127.0.0.1:0\"").await;
    assert!(s.admin.starts_with("http://127.0.0.1:"), "{}", s.admin);
    assert_ne!(s.admin, s.base);
    assert!(
        !s.data_dir().join("admin.sock").exists(),
        "no socket when admin_bind is set"
    );
    let none = admin_request(&s.admin, "GET", "/admin/users", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let users = s.admin_call("GET", "/admin/users", None).await;
    assert_eq!(users.status, StatusCode::OK);
    assert_eq!(users.json[0]["username"], "alice");
    assert_eq!(s.get("/admin/users").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[actix_rt::test]
async fn metrics_bind_moves_metrics_off_the_public_listener() {
    let public = TestServer::start("").await;
    assert_eq!(public.get("/metrics").await.status, StatusCode::OK, "public by default");
    assert!(public.metrics.is_none());
    public.stop().await;

    let s = TestServer::start("metrics_bind = \"127.0.0.1:0\"").await;
    assert_eq!(s.get("/metrics").await.status, StatusCode::NOT_FOUND);
    let base = s.metrics.clone().unwrap();
    s.issue("read").await;
    let m = Reply::read(client().get(format!("{base}/metrics")).send().await.unwrap()).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.text.contains("tessera_http_requests_total"), "{}", m.text);
    let other = client().get(format!("{base}/oauth/jwks")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "only /metrics there");
    s.stop().await;
}

fn tessera(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::cli::run(config, args, None)
}

/// With `admin_bind`, the CLI reaches the running server's admin API over TCP.
#[actix_rt::test]
async fn the_cli_reaches_a_running_server_on_admin_bind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nworkers = 1\nshards = 1\nid_token_alg = \"ES256\"\n{}",
            dir.path().join("data"),
            common::CLIENTS
        ),
    )
    .unwrap();
    let (_server, base) = common::spawn_tessera(dir.path()).await;
    let admin = tessera::datadir::read_admin(&dir.path().join("data")).unwrap();
    assert!(
        admin.admin.starts_with("http://127.0.0.1:") && admin.admin != base,
        "{}",
        admin.admin
    );
    let out = tessera(&config, &["client", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("other-client"), "{listed}");
    let public = client().get(format!("{base}/admin/clients")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
}

/// The CLI manages clients directly when no server runs, and through the admin API while one
/// holds the data directory; the secret it prints works for client authentication.
#[actix_rt::test]
async fn cli_manages_clients_offline_and_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nworkers = 1\nshards = 1\n",
            dir.path().join("data")
        ),
    )
    .unwrap();

    let out = tessera(
        &config,
        &[
            "client",
            "add",
            "offline-app",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
            // It introspects its own token below; a client with grant types may only if told.
            "--introspect",
            "true",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("secret printed once")
        .to_owned();

    let mut server = ServerProcess(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("TESSERA_LOG", "debug")
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let data = dir.path().join("data");
    let mut admin = None;
    for _ in 0..200 {
        if let Ok(a) = tessera::datadir::read_admin(&data) {
            admin = Some(a);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let base = admin.expect("server started").url;

    let mut token = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("offline-app", &secret)
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK, "the CLI-printed secret authenticates");
    let token = token.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let introspected = client()
        .post(format!("{base}/oauth/introspect"))
        .basic_auth("offline-app", &secret)
        .send_form(&[("token", token.as_str())])
        .await
        .unwrap();
    assert_eq!(introspected.status(), StatusCode::OK);

    let out = tessera(
        &config,
        &[
            "client",
            "add",
            "online-app",
            "--secret",
            "online-secret-1",
            "--grant-type",
            "client_credentials",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = tessera(&config, &["client", "list"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("offline-app") && listed.contains("online-app"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "list never shows secrets");

    let online = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("online-app", "online-secret-1")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    assert_eq!(
        online.status(),
        StatusCode::OK,
        "a client added while running works at once"
    );

    let out = tessera(&config, &["client", "remove", "online-app"]);
    assert!(out.status.success());
    let out = tessera(&config, &["client", "remove", "online-app"]);
    assert!(!out.status.success(), "removing a missing client fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such client"));

    server.kill();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("tessera listening"), "the debug log was captured");
    for secret_value in [secret.as_str(), token.as_str(), "online-secret-1", &admin_token(&data)] {
        assert!(!log.contains(secret_value), "a secret or token reached the log");
    }
    // The server is gone but its admin file remains: the CLI falls back to the store itself.
    let out = tessera(&config, &["client", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains("offline-app") && !listed.contains("online-app"),
        "{listed}"
    );
}

fn admin_token(data: &std::path::Path) -> String {
    tessera::datadir::read_admin(data).unwrap().token
}
