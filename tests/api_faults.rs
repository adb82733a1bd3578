//! The breaker with Tessera as a real process that hangs, dies and comes back: uncached tokens
//! get 503 with `Retry-After`, at once once the breaker is open; cached tokens keep working; the
//! breaker closes when Tessera answers again.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::api::{config, ApiServer};
use common::ServerProcess;
use tessera_api::ResourceServerConfig;

const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(600);
const OPEN_FOR: Duration = Duration::from_millis(1500);

/// Starts the tessera binary on `bind` with the test clients; returns once it is ready.
async fn start_tessera(dir: &Path, bind: &str) -> (ServerProcess, String) {
    let toml = format!(
        "bind = \"{bind}\"\ndata_dir = {:?}\nworkers = 1\nshards = 2\nid_token_alg = \"ES256\"\n{}",
        dir.join("data"),
        common::CLIENTS
    );
    std::fs::write(dir.join("tessera.toml"), toml).unwrap();
    common::spawn_tessera(dir).await
}

fn signal(process: &ServerProcess, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &process.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits until every thread of the process is stopped: SIGSTOP is delivered when the process's
/// threads next run, and on a busy machine one of them may still answer a request first.
async fn wait_stopped(process: &ServerProcess) {
    let tasks = format!("/proc/{}/task", process.0.id());
    let all_stopped = || {
        std::fs::read_dir(&tasks).unwrap().all(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    };
    for _ in 0..500 {
        if all_stopped() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("tessera did not stop within 5 s of SIGSTOP");
}

#[actix_rt::test]
async fn the_breaker_opens_fails_fast_and_closes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tessera, base) = start_tessera(dir.path(), "127.0.0.1:0").await;
    let api = ApiServer::start(ResourceServerConfig {
        breaker_failures: 3,
        breaker_open: OPEN_FOR,
        upstream_timeout: UPSTREAM_TIMEOUT,
        ..config(&base, Duration::from_secs(60))
    })
    .await;
    let cached = common::issue_at(&base).await;
    let uncached = common::issue_at(&base).await;
    let also_uncached = common::issue_at(&base).await;
    assert_eq!(api.get("/api/protected", Some(&cached)).await.status, StatusCode::OK);

    // Tessera hangs (SIGSTOP): each call waits for the timeout, and three of them open the breaker.
    signal(&tessera, "-STOP");
    wait_stopped(&tessera).await;
    for i in 0..3 {
        let r = api.get("/api/protected", Some(&uncached)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "call {i}: {}", r.text);
        assert_eq!(r.json["error"], "temporarily_unavailable");
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(api.get("/health", None).await.json["breaker"], "open");

    // Open: no call to Tessera, an answer well inside the timeout, and Retry-After to the end of the open time.
    let calls = api.counter(tessera_api::metrics::UPSTREAM_CALLS, "").await;
    let started = Instant::now();
    let r = api.get("/api/protected", Some(&also_uncached)).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // Any answer that had waited on the hung Tessera would take at least the upstream timeout.
    assert!(took < UPSTREAM_TIMEOUT, "fail fast, not after a timeout: {took:?}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        api.counter(tessera_api::metrics::UPSTREAM_CALLS, "").await,
        calls,
        "no call while open"
    );

    // The cached token still works, from the cache.
    assert_eq!(api.get("/api/protected", Some(&cached)).await.status, StatusCode::OK);

    // Tessera dies and comes back on the same port with the same data.
    signal(&tessera, "-CONT");
    tessera.kill();
    let port = base.rsplit(':').next().unwrap();
    let (_tessera, base_again) = start_tessera(dir.path(), &format!("127.0.0.1:{port}")).await;
    assert_eq!(base_again, base);

    // After the open time, the next uncached token is the probe; it succeeds and closes the breaker.
    actix_rt::time::sleep(OPEN_FOR).await;
    let r = api.get("/api/protected", Some(&uncached)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(api.get("/health", None).await.json["breaker"], "closed");
    assert_eq!(
        api.get("/api/protected", Some(&also_uncached)).await.status,
        StatusCode::OK
    );
}
