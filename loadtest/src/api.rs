//! The `api` scenario: resource-server traffic through the demo API, with the pool's tokens as
//! bearer tokens. 60% `GET /api/protected`, 30% `GET /api/user/profile` (the pool's tokens have
//! `read`), 10% `GET /api/data`. Every answer is checked against the token's expected state: a
//! live token must get 200, a revoked or never-issued one 401; anything else is a failure.
//!
//! The API is at `LOADTEST_API` (default `http://127.0.0.1:5000`); goose's `--host` stays
//! Tessera, where the pool is prepared.
//!
//! `api-revoke` is the same traffic while the campaign revokes live tokens at Tessera (1% of
//! transactions, at most `LOADTEST_REVOCATIONS`, default 5000), and checks what the API does
//! with them: a tenth of the API calls present a token the campaign revoked. A call made more
//! than [`GRACE`] after the revocation was acknowledged must get 401; a 200 then is a failure
//! (`served a token revoked over 1 s earlier`), counted in the summary printed at the end.
//! Calls within the grace may get either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use goose::prelude::*;
use rand::Rng;

use crate::pool::Expect;

/// How long after its revocation a token may still work at the API.
pub const GRACE: Duration = Duration::from_secs(1);

/// Tokens this campaign revoked, with when Tessera acknowledged it.
struct Revocations {
    at: RwLock<HashMap<String, Instant>>,
    /// The same tokens in order, for drawing one at random.
    list: RwLock<Vec<String>>,
    limit: usize,
    /// API calls made with a token revoked more than `GRACE` earlier, and how many got 200.
    checked: AtomicU64,
    served: AtomicU64,
}

static REVOCATIONS: OnceLock<Revocations> = OnceLock::new();

fn revocations() -> &'static Revocations {
    REVOCATIONS.get_or_init(|| Revocations {
        at: RwLock::new(HashMap::new()),
        list: RwLock::new(Vec::new()),
        limit: std::env::var("LOADTEST_REVOCATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000),
        checked: AtomicU64::new(0),
        served: AtomicU64::new(0),
    })
}

/// `(revoked, checked past the grace, served past the grace)` when `api-revoke` ran.
pub fn revocation_summary() -> Option<(usize, u64, u64)> {
    let r = REVOCATIONS.get()?;
    let revoked = r.list.read().map(|l| l.len()).unwrap_or(0);
    Some((
        revoked,
        r.checked.load(Ordering::Relaxed),
        r.served.load(Ordering::Relaxed),
    ))
}

struct Endpoints {
    protected: String,
    profile: String,
    data: String,
}

static API: OnceLock<Endpoints> = OnceLock::new();

/// Sets the API's base URL; only 127.0.0.1 and localhost are accepted.
pub fn set_base(base: &str) -> Result<(), String> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("http://127.0.0.1:") || base.starts_with("http://localhost:")) {
        return Err(format!("load campaigns only target 127.0.0.1 (LOADTEST_API={base})"));
    }
    let _ = API.set(Endpoints {
        protected: format!("{base}/api/protected"),
        profile: format!("{base}/api/user/profile"),
        data: format!("{base}/api/data"),
    });
    Ok(())
}

fn endpoints() -> &'static Endpoints {
    API.get().expect("the API base is set before goose starts")
}

async fn call(user: &mut GooseUser, url: &'static str, name: &'static str) -> TransactionResult {
    let (token, expect) = crate::pool().draw(&mut rand::thread_rng());
    let revoked_at = REVOCATIONS
        .get()
        .and_then(|r| r.at.read().ok().and_then(|m| m.get(token).copied()));
    if let Some(at) = revoked_at {
        return call_revoked(user, url, name, token.to_owned(), at).await;
    }
    let status = if expect == Expect::Active { 200 } else { 401 };
    let builder = user.get_request_builder(&GooseMethod::Get, url)?.bearer_auth(token);
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path(url)
        .name(name)
        .expect_status_code(status)
        .set_request_builder(builder)
        .build();
    user.request(request).await?;
    Ok(())
}

pub async fn protected(user: &mut GooseUser) -> TransactionResult {
    call(user, &endpoints().protected, "api: protected").await
}

pub async fn profile(user: &mut GooseUser) -> TransactionResult {
    call(user, &endpoints().profile, "api: profile").await
}

pub async fn data(user: &mut GooseUser) -> TransactionResult {
    call(user, &endpoints().data, "api: data").await
}

/// An API call with a token this campaign revoked at `at`: past the grace it must be refused.
async fn call_revoked(
    user: &mut GooseUser,
    url: &'static str,
    name: &'static str,
    token: String,
    at: Instant,
) -> TransactionResult {
    let past_grace = at.elapsed() > GRACE;
    let builder = user.get_request_builder(&GooseMethod::Get, url)?.bearer_auth(&token);
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path(url)
        .name(name)
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    let status = goose.response.as_ref().map(|r| r.status().as_u16()).ok();
    if past_grace {
        let r = revocations();
        r.checked.fetch_add(1, Ordering::Relaxed);
        if status == Some(200) {
            r.served.fetch_add(1, Ordering::Relaxed);
            return user.set_failure(
                "served a token revoked over 1 s earlier",
                &mut goose.request,
                None,
                None,
            );
        }
    }
    Ok(())
}

/// `api-revoke`'s API calls: nine in ten as `api`, one with a token the campaign revoked.
pub async fn revoked_or_protected(user: &mut GooseUser) -> TransactionResult {
    let pick = {
        let list = revocations().list.read().unwrap_or_else(|p| p.into_inner());
        (!list.is_empty() && rand::thread_rng().gen_range(0..10) == 0)
            .then(|| list[rand::thread_rng().gen_range(0..list.len())].clone())
    };
    let Some(token) = pick else {
        return protected(user).await;
    };
    let at = revocations().at.read().unwrap_or_else(|p| p.into_inner())[&token];
    call_revoked(user, &endpoints().protected, "api: revoked", token, at).await
}

/// Revokes a live token of the pool at Tessera (as the client that issued it) and records when
/// Tessera acknowledged it; at most `LOADTEST_REVOCATIONS` in a campaign.
pub async fn revoke_live(user: &mut GooseUser) -> TransactionResult {
    let r = revocations();
    if r.list.read().map(|l| l.len()).unwrap_or(usize::MAX) >= r.limit {
        return Ok(());
    }
    let pool = crate::pool();
    let token = pool.live[rand::thread_rng().gen_range(0..pool.live.len())].clone();
    if r.at.read().map(|m| m.contains_key(&token)).unwrap_or(true) {
        return Ok(());
    }
    let form = [("token", token.as_str())];
    let goose = crate::post_as(user, &pool.issuer_client, "/oauth/revoke", "revoke", &form).await?;
    if goose.response.as_ref().is_ok_and(|res| res.status().is_success()) {
        let now = Instant::now();
        if let (Ok(mut at), Ok(mut list)) = (r.at.write(), r.list.write()) {
            at.insert(token.clone(), now);
            list.push(token);
        }
    }
    Ok(())
}
