//! Test harness: a real Tessera on an ephemeral port with its own temporary data directory,
//! and a small HTTP client speaking to it.
#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod cli;
pub mod feed;
pub mod node;

use std::time::Duration;

use awc::http::StatusCode;
use serde_json::Value;
use tessera::config::RawConfig;
use tessera::store::pg::testing::TestPostgres;

pub const CLIENTS: &str = r#"
[[clients]]
client_id = "demo-client"
client_secret = "demo-secret"
redirect_uris = ["http://127.0.0.1:3001/callback"]
grant_types = ["authorization_code", "refresh_token", "client_credentials"]
scopes = ["openid", "profile", "email", "read", "write", "offline_access"]
post_logout_redirect_uris = ["http://127.0.0.1:3001/"]
# The tests of refresh rotation expect a refresh token from every code exchange; the
# offline_access default is tested with a client of its own (tests/access.rs).
refresh_tokens = "always"

[[clients]]
client_id = "api-server"
client_secret = "api-secret"
grant_types = []
scopes = []

[[clients]]
client_id = "other-client"
client_secret = "other-secret"
redirect_uris = ["http://127.0.0.1:3002/callback"]
grant_types = ["authorization_code", "client_credentials"]
scopes = ["openid", "read"]

[[users]]
username = "alice"
password = "wonderland-42"
email = "alice@example.com"
name = "Alice Liddell"
"#;

/// Settings under which [`exercise_every_metric`] makes every metric appear: tokens expire
/// after a second and the sweeper runs every second, and one failed client authentication is
/// allowed back to back, so that the exercise's second one blocks and its third gets 429.
pub const EVERY_METRIC_SETTINGS: &str =
    "access_token_ttl_secs = 1\nsweep_interval_secs = 1\nclient_auth_failure_burst = 1";

/// Traffic that makes every Tessera metric appear on `/metrics`: issuance, active and inactive
/// introspection, failed client authentications and a 429 after them, a revocation, a
/// sign-in, a code and its replay, the revocation feed (a poll and a stream), a sweep of
/// expired tokens, a 405 and a 404. Returns one token it issued (expired by the time this returns).
pub async fn exercise_every_metric(s: &TestServer) -> String {
    let token = s.issue("read").await;
    s.introspect(&token).await;
    s.introspect("tsa_unknown").await;
    // A revocation, and its event by polling and on a stream (before api-server's failed
    // authentications below block it).
    let doomed = s.issue("read").await;
    s.revoke(&doomed).await;
    feed::poll(&s.base, ("api-server", "api-secret"), Some("0")).await;
    let _stream = feed::EventStream::open(&s.base, ("api-server", "api-secret"), Some("0")).await;
    for _ in 0..3 {
        s.post_form("/oauth/introspect", Some(("api-server", "nope")), &[("token", "x")])
            .await;
    }
    // A sign-in, a code, and a replay of that code, which revokes what it gave.
    let mut b = browser::Browser::new(s);
    let code = b.approve(&browser::authorize_query("openid", &[])).await["code"].clone();
    for _ in 0..2 {
        s.exchange_code(&code, browser::VERIFIER).await;
    }
    actix_rt::time::sleep(Duration::from_millis(2500)).await; // let the sweeper run
    s.get("/oauth/token").await; // 405 from the resource's default service
    s.get("/no/such/route").await;
    token
}

/// An in-memory sink for a test's tracing subscriber: clones write to the same buffer.
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestServer {
    pub base: String,
    pub running_store: tessera::store::Store,
    pub handle: actix_web::dev::ServerHandle,
    pub dir: tempfile::TempDir,
    /// Where the admin API answers (`unix:/…` or `http://…`), as in `admin.json`.
    pub admin: String,
    /// The metrics listener's base URL, when `metrics_bind` is set.
    pub metrics: Option<String>,
    pub side: tessera::server::SideListeners,
    /// Closed by [`TestServer::stop`], so that open event streams do not hold the stop up.
    pub feed: tessera::feed::Feed,
    /// The database this server runs on, when it is the suites' PostgreSQL.
    pub database_url: Option<String>,
    /// The server's own throwaway PostgreSQL when the suites run on it (see [`suite_store`]);
    /// last, so that it stops after the server's store let go of it.
    pub postgres: Option<TestPostgres>,
}

/// The store the suites run on when a test does not name one: sled, or PostgreSQL with
/// `TESSERA_TEST_STORE=postgres` (scripts/test.sh runs the storage-touching suites both ways).
/// Each server then gets a throwaway PostgreSQL of its own, so tests stay independent.
fn suite_store(extra: &str) -> Option<TestPostgres> {
    if extra.contains("store =") {
        return None;
    }
    match std::env::var("TESSERA_TEST_STORE").as_deref() {
        Ok("postgres") => Some(TestPostgres::start()),
        Ok("sled") | Err(_) => None,
        Ok(other) => panic!("TESSERA_TEST_STORE is sled or postgres, not {other:?}"),
    }
}

impl TestServer {
    /// Starts a server with the test clients and `extra` TOML settings.
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // ES256 keys are made in microseconds, RSA keys in tenths of a second; tests that are
        // about RS256 say so in `extra`.
        let alg = if extra.contains("id_token_alg") {
            ""
        } else {
            "id_token_alg = \"ES256\"\n"
        };
        let postgres = suite_store(extra);
        let database_url = postgres.as_ref().map(TestPostgres::database);
        let store = database_url
            .as_ref()
            .map(|url| format!("store = \"postgres\"\ndatabase_url = {url:?}\n"))
            .unwrap_or_default();
        let toml = format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nworkers = 1\nshards = 2\n{store}{alg}{extra}\n{CLIENTS}",
            dir.path().join("data")
        );
        let settings = RawConfig::from_toml(&toml).unwrap().validate().unwrap();
        let running = tessera::server::start(settings).await.unwrap();
        let scheme = if extra.contains("tls_cert") { "https" } else { "http" };
        let base = format!("{scheme}://{}", running.addr);
        let handle = running.server.handle();
        actix_rt::spawn(running.server);
        TestServer {
            base,
            running_store: running.store,
            handle,
            dir,
            admin: running.admin,
            metrics: running.metrics_addr.map(|a| format!("http://{a}")),
            side: running.side,
            feed: running.feed,
            database_url,
            postgres,
        }
    }

    /// The store part of this server's configuration (`data_dir`, and the database when it
    /// runs on PostgreSQL), for a command-line run against the same installation.
    pub fn store_config(&self) -> String {
        let mut toml = format!("data_dir = {:?}\n", self.data_dir());
        if let Some(url) = &self.database_url {
            toml.push_str(&format!("store = \"postgres\"\ndatabase_url = {url:?}\n"));
        }
        toml
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The admin credential this run wrote to `admin.json`.
    pub fn admin_token(&self) -> String {
        tessera::datadir::read_admin(&self.data_dir()).unwrap().token
    }

    /// A request to the admin API with this run's credential.
    pub async fn admin_call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        admin_request(&self.admin, method, path, Some(&self.admin_token()), body).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a form with HTTP Basic client authentication; returns status, headers and JSON.
    pub async fn post_form(&self, path: &str, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> Reply {
        let mut req = client().post(self.url(path));
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, secret);
        }
        Reply::read(req.send_form(&form).await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(client().get(self.url(path)).send().await.unwrap()).await
    }

    /// Issues a client-credentials token for demo-client with `scope`.
    pub async fn issue(&self, scope: &str) -> String {
        let r = self
            .post_form(
                "/oauth/token",
                Some(("demo-client", "demo-secret")),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json["access_token"].as_str().unwrap().to_owned()
    }

    /// Exchanges an authorization code as demo-client, for the browser module's redirect URI.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Reply {
        self.post_form(
            "/oauth/token",
            Some(("demo-client", "demo-secret")),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", browser::REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Revokes `token` as demo-client (RFC 7009) and checks that Tessera answered 200.
    pub async fn revoke(&self, token: &str) {
        let r = self
            .post_form(
                "/oauth/revoke",
                Some(("demo-client", "demo-secret")),
                &[("token", token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Introspects as the api-server resource server.
    pub async fn introspect(&self, token: &str) -> Value {
        let r = self
            .post_form(
                "/oauth/introspect",
                Some(("api-server", "api-secret")),
                &[("token", token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json
    }

    /// Counts the token records stored across all shard trees.
    pub fn stored_tokens(&self) -> usize {
        self.running_store.stored_tokens().unwrap()
    }

    pub async fn stop(self) {
        self.feed.close();
        self.handle.stop(true).await;
        self.side.stop(true).await;
    }
}

/// One request to the admin API at `admin` (`unix:/path` or `http://host:port`, as in
/// `admin.json`), with `token` as the bearer credential if given and `body` as JSON.
pub async fn admin_request(admin: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(20));
    let (builder, base) = match admin.strip_prefix("unix:") {
        Some(socket) => (builder.unix_socket(socket), "http://admin".to_owned()),
        None => (builder, admin.to_owned()),
    };
    let http = builder.build().unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    Reply::from_reqwest(req.send().await.unwrap()).await
}

pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(20)).finish()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn read<S>(mut res: awc::ClientResponse<S>) -> Self
    where
        S: futures_core::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
    {
        let body = res.body().limit(1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            text,
            json,
        }
    }

    /// The same from a reqwest response (the admin socket and https tests use reqwest).
    pub async fn from_reqwest(res: reqwest::Response) -> Self {
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        let mut headers = awc::http::header::HeaderMap::new();
        for (name, value) in res.headers() {
            if let (Ok(n), Ok(v)) = (
                awc::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                awc::http::header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(n, v);
            }
        }
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client-credentials token for demo-client from the Tessera at `base` (a spawned binary).
pub async fn issue_at(base: &str) -> String {
    let mut r = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// Whether `token` introspects active (as api-server) at the Tessera at `base`.
pub async fn active_at(base: &str, token: &str) -> bool {
    let mut r = client()
        .post(format!("{base}/oauth/introspect"))
        .basic_auth("api-server", "api-secret")
        .send_form(&[("token", token)])
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["active"]
        .as_bool()
        .expect("an introspection answer says whether the token is active")
}

/// Writes `<dir>/tessera.toml` for [`spawn_tessera`]: port 0, `<dir>/data`, `workers` and
/// `shards`, then `extra` settings, then the test clients.
pub fn write_config(dir: &std::path::Path, workers: usize, shards: usize, extra: &str) {
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nworkers = {workers}\nshards = {shards}\n{extra}\n{CLIENTS}",
        dir.join("data"),
    );
    std::fs::write(dir.join("tessera.toml"), toml).unwrap();
}

/// Revokes `token` as demo-client at the Tessera at `base`, and checks that it answered 200.
pub async fn revoke_at(base: &str, token: &str) {
    let r = client()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("token", token)])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Starts the tessera binary on `<dir>/tessera.toml` (whose `data_dir` is `<dir>/data`) and
/// returns once it answers `/ready`, with its base URL (read from the `admin.json` it writes,
/// so `bind` may use port 0).
pub async fn spawn_tessera(dir: &std::path::Path) -> (ServerProcess, String) {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let data = dir.join("data");
    let _ = std::fs::remove_file(data.join("admin.json"));
    let child = ServerProcess(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--config"])
            .arg(dir.join("tessera.toml"))
            .env("TESSERA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the tessera binary"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(a) = tessera::datadir::read_admin(&data) {
            if let Ok(r) = client().get(format!("{}/ready", a.url)).send().await {
                if r.status().is_success() {
                    return (child, a.url);
                }
            }
        }
        assert!(Instant::now() < deadline, "tessera did not become ready within 30 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `tessera` process started by a test. Dropping it kills (SIGKILL) and reaps the process, so a
/// failing test leaves no server behind.
pub struct ServerProcess(pub std::process::Child);

impl ServerProcess {
    /// SIGKILL now and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
