//! The `api` scenario: resource-server traffic through the demo API, with the pool's tokens as
//! bearer tokens. 60% `GET /api/protected`, 30% `GET /api/user/profile` (the pool's tokens have
//! `read`), 10% `GET /api/data`. Every answer is checked against the token's expected state: a
//! live token must get 200, a revoked or never-issued one 401; anything else is a failure.
//!
//! The API is at `LOADTEST_API` (default `http://127.0.0.1:5000`); goose's `--host` stays
//! Tessera, where the pool is prepared.

use std::sync::OnceLock;

use goose::prelude::*;

use crate::pool::Expect;

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
