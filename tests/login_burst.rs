//! A burst of concurrent wrong-password sign-ins for one user, against the release binary: the
//! throttle admits at most `login_lockout_after` of them to argon2 (the failure is reserved
//! before the check), the checks run a few at a time, so the server's resident memory stays
//! small, every answer is 401 or 429, and afterwards the user is locked.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use common::browser::{authorize_query, hidden_inputs};
use common::{client, Reply};

const LOCKOUT_AFTER: u64 = 10;
const BURST: usize = 50;
const MAX_RSS_KIB: u64 = 256 * 1024;

fn write_config(dir: &Path) {
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\nworkers = 2\nshards = 2\nid_token_alg = \"ES256\"\n\
         login_lockout_after = {LOCKOUT_AFTER}\nlogin_lockout_secs = 600\n{}",
        dir.join("data"),
        common::CLIENTS
    );
    std::fs::write(dir.join("tessera.toml"), toml).unwrap();
}

/// VmRSS of process `pid` in KiB, while it lives.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the RSS of `pid` every 2 ms until `stop`; the largest sample is kept in `max`.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>, max: Arc<AtomicU64>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                max.fetch_max(kib, Ordering::Relaxed);
                samples += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        samples
    })
}

fn sign_ins(metrics: &str, result: &str) -> u64 {
    let prefix = format!("tessera_sign_ins_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[actix_rt::test]
async fn a_burst_of_wrong_passwords_reaches_argon2_at_most_lockout_after_times() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let (server, base) = common::spawn_tessera(dir.path()).await;
    let pid = server.0.id();
    let http = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(30))
        .finish();

    // One GET of the login page: its CSRF cookie and token serve every post of the burst.
    let res = http
        .get(format!("{base}/oauth/authorize?{}", authorize_query("openid", &[])))
        .send()
        .await
        .unwrap();
    let page = Reply::read(res).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let csrf_cookie = page
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tessera_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("a CSRF cookie")
        .to_owned();
    let form = |password: &str| {
        let mut form = hidden_inputs(&page.text);
        form.push(("username".into(), "alice".into()));
        form.push(("password".into(), password.into()));
        serde_urlencoded::to_string(&form).unwrap()
    };
    let post = |body: String| {
        http.post(format!("{base}/oauth/login"))
            .insert_header(("cookie", csrf_cookie.clone()))
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .send_body(body)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(pid, Arc::clone(&stop), Arc::clone(&max_rss));
    let burst: Vec<_> = (0..BURST).map(|i| post(form(&format!("wrong-guess-{i}")))).collect();
    let answers = futures_util::future::join_all(burst).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();

    let mut statuses = Vec::new();
    for answer in answers {
        statuses.push(answer.expect("every sign-in is answered").status());
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "only 401 and 429: {statuses:?}"
    );
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count() as u64;
    assert!(samples > 10, "RSS sampled {samples} times");
    let max_rss = max_rss.load(Ordering::Relaxed);
    assert!(max_rss < MAX_RSS_KIB, "resident memory reached {max_rss} KiB");

    let mut res = client().get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = String::from_utf8(res.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let failures = sign_ins(&metrics, "failure");
    assert!(
        (1..=LOCKOUT_AFTER).contains(&failures),
        "{failures} wrong passwords reached argon2, the allowance is {LOCKOUT_AFTER}"
    );
    assert_eq!(unauthorized, failures, "each checked failure answers 401, the rest 429");
    // For BENCHMARKS.md ("The login burst").
    eprintln!("login burst: {BURST} attempts, {failures} checked, peak RSS {max_rss} KiB over {samples} samples");

    // alice is locked now: even her right password is refused, without a session.
    let locked = Reply::read(post(form("wonderland-42")).await.unwrap()).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.text);
    assert!(locked.header("retry-after").is_some());
    assert!(locked
        .headers
        .get_all("set-cookie")
        .all(|v| !v.to_str().unwrap().starts_with("tessera_session=")));
    drop(server);
}
