//! OpenID Connect beside the code flow, over HTTP: userinfo by scope and its RFC 6750 errors,
//! the JWKS and key rotation, RP-initiated logout, `prompt=login`, and user management on the
//! command line.

use crate::common;

use awc::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::browser::{authorize_query, query_of, Browser, REDIRECT, VERIFIER};
use common::cli::ok;
use common::{client, Reply, TestServer};
use serde_json::{json, Value};

/// Signs in (as `user`), approves `scope`, exchanges the code; returns the token response.
async fn tokens_as(s: &TestServer, b: &mut Browser<'_>, scope: &str, user: (&str, &str)) -> Value {
    let code = b.approve_as(&authorize_query(scope, &[]), user.0, user.1).await["code"].clone();
    let r = s.exchange_code(&code, VERIFIER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

async fn tokens(s: &TestServer, b: &mut Browser<'_>, scope: &str) -> Value {
    tokens_as(s, b, scope, ("alice", "wonderland-42")).await
}

async fn userinfo(s: &TestServer, bearer: Option<&str>) -> Reply {
    let mut req = client().get(s.url("/oauth/userinfo"));
    if let Some(t) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {t}")));
    }
    Reply::read(req.send().await.unwrap()).await
}

fn jwt_part(jwt: &str, part: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(part).unwrap()).unwrap()).unwrap()
}

#[actix_rt::test]
async fn userinfo_gives_claims_by_scope_and_bearer_errors() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let full = tokens(&s, &mut b, "openid profile email").await;
    let access = full["access_token"].as_str().unwrap();
    let r = userinfo(&s, Some(access)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let sub = jwt_part(full["id_token"].as_str().unwrap(), 1)["sub"].clone();
    assert_eq!(
        r.json,
        json!({"sub": sub, "preferred_username": "alice", "name": "Alice Liddell",
               "email": "alice@example.com", "email_verified": false})
    );
    // The token may also come in a POST body (RFC 6750 §2.2).
    let posted = s.post_form("/oauth/userinfo", None, &[("access_token", access)]).await;
    assert_eq!(posted.json, r.json);

    let narrow = tokens(&s, &mut b, "openid read").await;
    let r = userinfo(&s, narrow["access_token"].as_str()).await;
    assert_eq!(
        r.json,
        json!({ "sub": sub }),
        "without profile and email, only the subject"
    );

    let no_openid = tokens(&s, &mut b, "read").await;
    assert!(no_openid.get("id_token").is_none(), "no openid scope, no ID token");
    let r = userinfo(&s, no_openid["access_token"].as_str()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));

    let missing = userinfo(&s, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"tessera\""));
    let machine = s.issue("read").await;
    let refresh = full["refresh_token"].as_str().unwrap();
    for bad in ["tsa_unknown", machine.as_str(), refresh] {
        let r = userinfo(&s, Some(bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
    s.stop().await;
}

#[actix_rt::test]
async fn rotated_keys_stay_published_while_their_tokens_live() {
    let s = TestServer::start("id_token_alg = \"RS256\"").await;
    let mut b = Browser::new(&s);
    let jwks = s.get("/oauth/jwks").await;
    assert_eq!(jwks.status, StatusCode::OK);
    let keys = jwks.json["keys"].as_array().unwrap().clone();
    // The ID-token key first, then the revocation feed's own key (always ES256).
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    assert_eq!(
        (keys[1]["kty"].as_str(), keys[1]["alg"].as_str()),
        (Some("EC"), Some("ES256"))
    );
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "no private part is published"
    );
    let old = tokens(&s, &mut b, "openid").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt_part(&old, 0)["kid"], keys[0]["kid"]);

    let res = s
        .admin_call("POST", "/admin/keys/rotate", Some(&json!({"alg": "ES256"})))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let new_kid = res.json["kid"].clone();
    let unauthorised = common::admin_request(&s.admin, "POST", "/admin/keys/rotate", None, None).await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);

    let jwks = s.get("/oauth/jwks").await.json;
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert!(kids.contains(&&keys[0]["kid"]), "the retired key is still published");
    assert!(kids.contains(&&keys[1]["kid"]), "and the feed's retired key");
    assert!(kids.contains(&&new_kid));
    assert_eq!(kids.len(), 4, "the feed's key turned over with the ID-token key");
    let new = tokens(&s, &mut b, "openid").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = jwt_part(&new, 0);
    assert_eq!(
        (header["kid"].clone(), header["alg"].clone()),
        (new_kid, json!("ES256"))
    );
    let algs = s.get("/.well-known/openid-configuration").await.json["id_token_signing_alg_values_supported"].clone();
    assert_eq!(algs, json!(["RS256", "ES256"]));
    s.stop().await;
}

#[actix_rt::test]
async fn logout_ends_the_session_and_returns_only_to_registered_uris() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    let id_token = tokens(&s, &mut b, "openid").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(b.cookies.contains_key("tessera_session"));

    let hint = format!("/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri=");
    let r = b.get(&format!("{hint}https%3A%2F%2Fevil.example%2F&state=s1")).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "an unregistered URI is never followed"
    );
    assert!(b.cookies.contains_key("tessera_session"));
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    let r = b
        .get(&format!(
            "/oauth/logout?id_token_hint={forged}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A3001%2F"
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a hint we did not sign is refused");

    let r = b.get(&format!("{hint}http%3A%2F%2F127.0.0.1%3A3001%2F&state=s1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some("http://127.0.0.1:3001/?state=s1"));
    assert!(
        !b.cookies.contains_key("tessera_session"),
        "the session cookie is cleared"
    );
    let again = b
        .get(&format!("/oauth/authorize?{}", authorize_query("openid", &[])))
        .await;
    assert!(
        again.status == StatusCode::OK && again.text.contains("Sign in"),
        "signed out"
    );

    let plain = b.get("/oauth/logout").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.text.contains("signed out"));
    s.stop().await;
}

/// Without a valid hint that names the signed-in user, sign-out asks first (RP-Initiated Logout
/// §3): a link alone cannot end someone's session.
#[actix_rt::test]
async fn logout_without_a_hint_for_the_signed_in_user_asks_first() {
    let s = TestServer::start("").await;
    let mut alice = Browser::new(&s);
    let alice_token = tokens(&s, &mut alice, "openid").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = "post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A3001%2F&state=s2";

    // No hint: a confirmation page; the session is still there.
    let asked = alice.get(&format!("/oauth/logout?client_id=demo-client&{back}")).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert!(asked.text.contains("Sign out?"), "{}", asked.text);
    assert!(asked.text.contains("demo-client"));
    let csp = asked.header("content-security-policy").unwrap();
    assert!(csp.ends_with("form-action 'self' http://127.0.0.1:3001"), "{csp}");
    assert!(alice.cookies.contains_key("tessera_session"));

    // The form needs its CSRF token.
    let forged = alice
        .post(
            "/oauth/logout",
            &[
                ("csrf", "forged"),
                ("client_id", "demo-client"),
                ("post_logout_redirect_uri", "http://127.0.0.1:3001/"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(alice.cookies.contains_key("tessera_session"));
    // The return address is checked again on the post.
    let mut fields = common::browser::hidden_inputs(&asked.text);
    for (name, value) in &mut fields {
        if name == "post_logout_redirect_uri" {
            *value = "https://evil.example/".into();
        }
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let evil = alice.post("/oauth/logout", &pairs).await;
    assert_eq!(evil.status, StatusCode::BAD_REQUEST);
    assert!(alice.cookies.contains_key("tessera_session"));

    let confirmed = alice.submit(&asked, &[]).await;
    assert_eq!(confirmed.status, StatusCode::SEE_OTHER, "{}", confirmed.text);
    assert_eq!(confirmed.header("location"), Some("http://127.0.0.1:3001/?state=s2"));
    assert!(!alice.cookies.contains_key("tessera_session"), "the session ended");

    // A valid hint for another user: asked too, and the session stays.
    let created = s
        .admin_call(
            "POST",
            "/admin/users",
            Some(&json!({"username": "bob", "password": "builder-of-things-7"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let mut bob = Browser::new(&s);
    bob.approve_as(&authorize_query("openid", &[]), "bob", "builder-of-things-7")
        .await;
    let other = bob
        .get(&format!("/oauth/logout?id_token_hint={alice_token}&{back}"))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    assert!(other.text.contains("Sign out?") && other.text.contains("bob"));
    assert!(bob.cookies.contains_key("tessera_session"));

    // No session at all: nothing to confirm, straight back.
    let mut nobody = Browser::new(&s);
    let direct = nobody.get(&format!("/oauth/logout?client_id=demo-client&{back}")).await;
    assert_eq!(direct.status, StatusCode::SEE_OTHER);
    assert_eq!(direct.header("location"), Some("http://127.0.0.1:3001/?state=s2"));
    s.stop().await;
}

#[actix_rt::test]
async fn prompt_login_asks_for_the_password_again() {
    let s = TestServer::start("").await;
    let mut b = Browser::new(&s);
    b.approve(&authorize_query("openid", &[])).await;
    let silent = b
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query("openid", &[("prompt", "none")])
        ))
        .await;
    assert_eq!(silent.status, StatusCode::SEE_OTHER);
    assert!(
        query_of(silent.header("location").unwrap()).contains_key("code"),
        "signed in and consented"
    );
    let forced = b
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query("openid", &[("prompt", "login")])
        ))
        .await;
    assert!(forced.status == StatusCode::OK && forced.text.contains("Sign in"));
    let back = b
        .submit(&forced, &[("username", "alice"), ("password", "wonderland-42")])
        .await;
    let location = back.header("location").unwrap();
    assert!(
        !location.contains("prompt=login"),
        "no loop back to the login page: {location}"
    );
    let done = b.get(location).await;
    assert!(done.header("location").unwrap().starts_with(REDIRECT));
    s.stop().await;
}

async fn tessera(config: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    common::cli::run_beside(config, args, stdin).await
}

#[actix_rt::test]
async fn the_cli_manages_users_while_the_server_runs_and_after() {
    let s = TestServer::start("").await;
    let config = s.dir.path().join("cli.toml");
    std::fs::write(&config, s.store_config()).unwrap();

    let added = ok(&tessera(
        &config,
        &["user", "add", "carol", "--email", "carol@example.com"],
        Some("carol-password-1\n"),
    )
    .await);
    assert!(added.contains("user carol saved"), "{added}");
    let listed = ok(&tessera(&config, &["user", "list"], None).await);
    assert!(listed.contains("carol") && listed.contains("alice"), "{listed}");
    assert!(!listed.contains("carol-password-1") && !listed.contains("argon2"));

    let mut b = Browser::new(&s);
    let t = tokens_as(&s, &mut b, "openid email", ("carol", "carol-password-1")).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&s, Some(&access)).await.json["email"], "carol@example.com");

    let again = format!("/oauth/authorize?{}", authorize_query("openid", &[]));
    let before = b.get(&again).await;
    assert_eq!(
        before.status,
        StatusCode::SEE_OTHER,
        "signed in and consented: {}",
        before.text
    );
    ok(&tessera(
        &config,
        &["user", "passwd", "carol", "--password", "carol-password-2"],
        None,
    )
    .await);
    let after = b.get(&again).await;
    assert!(
        after.status == StatusCode::OK && after.text.contains("Sign in"),
        "a new password ends the sessions opened with the old one"
    );
    let mut fresh = Browser::new(&s);
    let login = fresh
        .get(&format!("/oauth/authorize?{}", authorize_query("openid", &[])))
        .await;
    let old = fresh
        .submit(&login, &[("username", "carol"), ("password", "carol-password-1")])
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "the old password no longer works");
    let new = fresh
        .submit(&login, &[("username", "carol"), ("password", "carol-password-2")])
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);

    ok(&tessera(&config, &["user", "remove", "carol"], None).await);
    assert_eq!(
        userinfo(&s, Some(&access)).await.status,
        StatusCode::UNAUTHORIZED,
        "a removed user's tokens give no claims"
    );
    let again = tessera(&config, &["user", "remove", "carol"], None).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no such user"));

    s.stop().await;
}

#[actix_rt::test]
async fn the_cli_manages_users_and_keys_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", dir.path().join("data"))).unwrap();
    ok(&tessera(&config, &["user", "add", "dave", "--password", "dave-password-1"], None).await);
    let short = tessera(&config, &["user", "add", "eve", "--password", "short"], None).await;
    assert!(!short.status.success(), "passwords are at least 8 characters");
    let listed = ok(&tessera(&config, &["user", "list"], None).await);
    assert!(listed.contains("dave") && !listed.contains("eve"), "{listed}");
    let rotated = ok(&tessera(&config, &["keys", "rotate", "--alg", "ES256"], None).await);
    assert!(rotated.contains("ES256"), "{rotated}");
    let key_files = std::fs::read_dir(dir.path().join("data/keys")).unwrap().count();
    assert_eq!(
        key_files, 2,
        "the first key, now retired, stays until its tokens expire"
    );
    let store = tessera::store::Store::open(&dir.path().join("data"), 1 << 20).unwrap();
    let dave = store.users().unwrap().get("dave").unwrap().unwrap();
    assert!(tessera::crypto::verify_password(&dave.password_hash, "dave-password-1"));
}
