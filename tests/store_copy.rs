//! `tessera store copy`: a sled installation moved onto PostgreSQL answers as it did, and a
//! second copy adds nothing.

use std::path::Path;

use tessera::store::pg::testing::TestPostgres;

use crate::common::cli::{ok, run_beside};
use crate::common::{self, active_at, client, issue_at, revoke_at, spawn_tessera};

fn write_config(dir: &Path, store: &str) {
    common::write_config(dir, 1, 2, &format!("id_token_alg = \"ES256\"\n{store}"));
}

async fn tessera(dir: &Path, args: &[&str]) -> std::process::Output {
    run_beside(&dir.join("tessera.toml"), args, None).await
}

#[actix_rt::test]
async fn a_sled_installation_moves_to_postgres_and_a_second_copy_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, "");
    // A client and a user made by the command line, so only the store holds them.
    let added = ok(&tessera(
        dir,
        &[
            "client",
            "add",
            "moved-app",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        ],
    )
    .await);
    let secret = added
        .lines()
        .find_map(|l| l.trim().strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no secret printed: {added}"))
        .to_owned();
    ok(&tessera(dir, &["user", "add", "carol", "--password", "carol-password-1"]).await);

    let (mut server, base) = spawn_tessera(dir).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(issue_at(&base).await);
    }
    let revoked = tokens.pop().unwrap();
    revoke_at(&base, &revoked).await;
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let postgres = TestPostgres::start();
    let url = postgres.database();
    let busy = tessera(dir, &["store", "copy", "--from", data, "--to", &url]).await;
    assert!(!busy.status.success(), "a store a server runs on is not copied");
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(said.contains("stop it first"), "{said}");
    server.kill();

    let first = ok(&tessera(dir, &["store", "copy", "--from", data, "--to", &url]).await);
    assert!(first.contains("and 9 tokens"), "{first}");
    let again = ok(&tessera(dir, &["store", "copy", "--from", data, "--to", &url]).await);
    assert!(again.contains("and 0 tokens"), "a second copy adds nothing: {again}");

    // The same data directory (its keys digest tokens alike), now on the database.
    write_config(dir, &format!("store = \"postgres\"\ndatabase_url = {url:?}"));
    let (_server, base) = spawn_tessera(dir).await;
    for token in &tokens {
        assert!(
            active_at(&base, token).await,
            "a token issued on sled is active on PostgreSQL"
        );
    }
    assert!(!active_at(&base, &revoked).await, "a revoked token stays revoked");
    let mut r = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("moved-app", &secret)
        .send_form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the client moved, with its secret's digest");
    let issued: serde_json::Value = r.json().await.unwrap();
    assert!(active_at(&base, issued["access_token"].as_str().unwrap()).await);
    let users = ok(&tessera(dir, &["user", "list"]).await);
    assert!(users.contains("carol"), "the user moved: {users}");
}
