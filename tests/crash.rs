//! Durability across process death. Under SIGKILL: the release binary serves concurrent issuance and revocation, is
//! killed mid-traffic, and restarts. Every token whose issuance returned 200 must introspect
//! active (unless a revocation of it was attempted), and every revocation that returned 200 must
//! stay revoked. On sled, and on PostgreSQL (a throwaway server the test starts), and with a
//! second node on the same database that must hold the same truth while the first is dead.

use crate::common;

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{active_at, client, spawn_tessera, write_config};

const WORKERS: usize = 24;
/// Bounds on the campaign before the kill: whichever comes first.
const MAX_REQUESTS_PER_WORKER: usize = 2_000;
const TRAFFIC_BEFORE_KILL: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Ledger {
    issued: Vec<String>,
    revoke_attempted: HashSet<String>,
    revoked: HashSet<String>,
}

/// Issues and revokes at `base`. With a `witness` (another node on the same database), every
/// token issued is introspected there once too, so that the witness holds it in memory and
/// must learn of its revocation from the change log.
async fn worker(base: String, witness: Option<String>, ledger: Rc<RefCell<Ledger>>, stop: Rc<RefCell<bool>>, n: usize) {
    let http = client();
    let mut mine: Vec<String> = Vec::new();
    for i in 0..MAX_REQUESTS_PER_WORKER {
        if *stop.borrow() {
            return;
        }
        if i % 3 == 2 && !mine.is_empty() {
            let token = mine.remove((i + n) % mine.len());
            ledger.borrow_mut().revoke_attempted.insert(token.clone());
            let res = http
                .post(format!("{base}/oauth/revoke"))
                .basic_auth("demo-client", "demo-secret")
                .send_form(&[("token", token.as_str())])
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    ledger.borrow_mut().revoked.insert(token);
                }
                _ => return,
            }
        } else {
            let res = http
                .post(format!("{base}/oauth/token"))
                .basic_auth("demo-client", "demo-secret")
                .send_form(&[("grant_type", "client_credentials"), ("scope", "read")])
                .await;
            let Ok(mut r) = res else { return };
            if !r.status().is_success() {
                return;
            }
            let Ok(body) = r.json::<serde_json::Value>().await else {
                return;
            };
            let token = body["access_token"].as_str().expect("a 200 carries a token").to_owned();
            ledger.borrow_mut().issued.push(token.clone());
            if let Some(witness) = &witness {
                assert!(
                    active_at(witness, &token).await,
                    "a token is active on another node as soon as its issuer answered"
                );
            }
            mine.push(token);
        }
    }
}

#[actix_rt::test]
async fn sigkill_loses_no_acknowledged_issuance_or_revocation() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 2, 2, "");
    kill_mid_traffic_and_check(dir.path(), "sled").await;
}

#[actix_rt::test]
async fn sigkill_loses_no_acknowledged_issuance_or_revocation_on_postgres() {
    let postgres = tessera::store::pg::testing::TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let url = postgres.database();
    write_config(
        dir.path(),
        2,
        2,
        &format!("store = \"postgres\"\ndatabase_url = {url:?}"),
    );
    kill_mid_traffic_and_check(dir.path(), "postgres").await;
    // Nothing of the tokens reached the data directory: they are all in the database.
    assert!(!dir.path().join("data/db").exists(), "no sled store beside PostgreSQL");
    // The server created the schema; `tessera migrate` finds nothing left to apply.
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["migrate", "--config"])
        .arg(dir.path().join("tessera.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("nothing to apply"), "{said}");
}

async fn kill_mid_traffic_and_check(dir: &Path, backend: &str) {
    let ledger = kill_mid_traffic(dir, None).await;
    let (mut child, base) = spawn_tessera(dir).await;
    check(&ledger, &base, &format!("{backend}, after a restart")).await;
    child.kill();
}

/// Two nodes on one database: the first is killed mid-traffic while the second, which held
/// every token the first issued, stays up. The second answers as the ledger says at once
/// (after one poll of the change log), and so does the first after its restart.
#[actix_rt::test]
async fn a_node_killed_mid_traffic_loses_nothing_its_peer_or_its_restart_can_see() {
    let postgres = tessera::store::pg::testing::TestPostgres::start();
    let url = postgres.database();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A database stall on a loaded machine must not turn into 503s here: this test is about
    // what is kept, not about vouching (tests/cluster.rs).
    let shared = format!(
        "store = \"postgres\"\ndatabase_url = {url:?}\nserver_key_file = {:?}\ncluster_poll_ms = 10\n\
         cluster_stale_ms = 10000",
        a.path().join("server.key")
    );
    write_config(a.path(), 2, 2, &shared);
    write_config(b.path(), 1, 2, &shared);
    let (mut peer, peer_base) = spawn_tessera(b.path()).await;
    let ledger = kill_mid_traffic(a.path(), Some(peer_base.clone())).await;
    // One poll of the change log, with room for a loaded machine.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    check(&ledger, &peer_base, "postgres, on the peer of a killed node").await;
    let (mut restarted, base) = spawn_tessera(a.path()).await;
    check(&ledger, &base, "postgres, the killed node restarted beside its peer").await;
    restarted.kill();
    peer.kill();
}

/// Runs the campaign against the node of `dir`, SIGKILLs it mid-traffic and returns the ledger.
async fn kill_mid_traffic(dir: &Path, witness: Option<String>) -> Ledger {
    let (mut child, base) = spawn_tessera(dir).await;
    let ledger = Rc::new(RefCell::new(Ledger::default()));
    let stop = Rc::new(RefCell::new(false));
    let tasks: Vec<_> = (0..WORKERS)
        .map(|n| actix_rt::spawn(worker(base.clone(), witness.clone(), ledger.clone(), stop.clone(), n)))
        .collect();
    actix_rt::time::sleep(TRAFFIC_BEFORE_KILL).await;
    child.kill(); // SIGKILL: no shutdown hooks run.
    *stop.borrow_mut() = true;
    for t in tasks {
        t.await.unwrap();
    }

    let ledger = Rc::try_unwrap(ledger).ok().unwrap().into_inner();
    assert!(
        ledger.issued.len() >= 200,
        "too little traffic to mean anything: {} issued",
        ledger.issued.len()
    );
    assert!(
        ledger.revoked.len() >= 50,
        "too few revocations: {}",
        ledger.revoked.len()
    );
    ledger
}

/// Every acknowledged token active at `base`, every acknowledged revocation refused there.
async fn check(ledger: &Ledger, base: &str, what: &str) {
    let mut lost = Vec::new();
    let mut resurrected = Vec::new();
    let mut checked_active = 0;
    for token in &ledger.issued {
        let attempted = ledger.revoke_attempted.contains(token);
        let revoked = ledger.revoked.contains(token);
        if attempted && !revoked {
            continue; // the kill interrupted this revocation: either outcome is correct
        }
        let active = active_at(base, token).await;
        match (revoked, active) {
            (false, false) => lost.push(token.clone()),
            (true, true) => resurrected.push(token.clone()),
            (false, true) => checked_active += 1,
            (true, false) => {}
        }
    }
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged tokens were lost by the crash",
        lost.len()
    );
    assert!(
        resurrected.is_empty(),
        "{what}: {} acknowledged revocations were undone by the crash",
        resurrected.len()
    );
    eprintln!(
        "crash test ({what}): {} issued, {} revoked, {} checked active",
        ledger.issued.len(),
        ledger.revoked.len(),
        checked_active
    );
}

/// SIGTERM is a graceful stop: the server drains, flushes, exits 0, and everything it issued is
/// there after a restart.
#[actix_rt::test]
async fn sigterm_stops_cleanly_and_keeps_every_token() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1, 1, "");
    let (mut server, base) = spawn_tessera(dir.path()).await;
    let http = client();
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let mut r = http
            .post(format!("{base}/oauth/token"))
            .basic_auth("demo-client", "demo-secret")
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .unwrap();
        tokens.push(
            r.json::<serde_json::Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let term = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tessera did not stop within 20 s of SIGTERM");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a graceful stop exits 0, got {status}");

    let (_server, base) = spawn_tessera(dir.path()).await;
    for token in &tokens {
        assert!(active_at(&base, token).await, "token lost across a graceful restart");
    }
}
