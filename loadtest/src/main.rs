//! Load campaigns against a running Tessera, with goose.
//!
//! Scenarios (choose with `--scenarios NAME`; goose drops the dashes in the machine name):
//! - `introspect-storm`: every user is a resource server (users spread over several
//!   introspecting clients) introspecting tokens drawn at random from the pool, with a share of
//!   revoked and never-issued tokens. Each answer is checked: a live token must be active,
//!   any other inactive; a wrong answer counts as a failed request.
//! - `issue`: client-credentials issuance.
//! - `mixed`: 95% introspection, 4% issuance, 1% revocation (of a token the user issued itself,
//!   so the pool's expected answers stay true).
//! - `code-flow`: every iteration is one full sign-in by a fresh browser session (authorize,
//!   login, consent when asked, code exchange with PKCE, one refresh), each step a named
//!   request; every user signs in as its own account `loadtest-user-N`. Consent is remembered
//!   after an account's first login, so later ones skip the page. See `code_flow`.
//! - `api`: resource-server traffic through the demo API (`LOADTEST_API`), with the pool's
//!   tokens as bearer tokens; every status is checked against the token's state. See `api`.
//! - `api-revoke`: the same while the campaign revokes live tokens at Tessera, counting any API
//!   call served with a token revoked more than a second earlier. See `api`.
//!
//! The pool (default 100,000 tokens) is issued over HTTP before the clock starts, and the
//! `code-flow` accounts (default 64) are created through the admin API then too. Settings goose
//! does not own come from `LOADTEST_*` variables (see `pool::Settings`). `scripts/loadtest.sh`
//! runs a campaign with the defaults and keeps goose's HTML report and a JSON summary.

mod api;
mod code_flow;
mod pool;

use std::sync::OnceLock;

use goose::goose::GooseResponse;
use goose::prelude::*;

use api::{data as api_data, profile as api_profile, protected as api_protected};
use api::{revoke_live, revoked_or_protected};
use code_flow::{code_flow, no_redirects};
use pool::{Client, Expect, Pool, Settings};

static POOL: OnceLock<Pool> = OnceLock::new();

/// Tokens a `mixed` user issued and may revoke.
#[derive(Clone)]
struct Issued(Vec<String>);

pub(crate) fn pool() -> &'static Pool {
    POOL.get().expect("the pool is prepared before goose starts")
}

/// POSTs `form` to `path` as `client` (HTTP Basic), recorded by goose under `name`.
async fn post_as(
    user: &mut GooseUser,
    client: &Client,
    path: &'static str,
    name: &'static str,
    form: &[(&str, &str)],
) -> Result<GooseResponse, Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Post, path)?
        .basic_auth(&client.id, Some(&client.secret))
        .form(form);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    user.request(request).await
}

async fn introspect(user: &mut GooseUser) -> TransactionResult {
    let pool = pool();
    let rs = &pool.resource_servers[user.weighted_users_index % pool.resource_servers.len()];
    let (token, expect) = pool.draw(&mut rand::thread_rng());
    let mut goose = post_as(user, rs, "/oauth/introspect", "introspect", &[("token", token)]).await?;
    let Ok(response) = goose.response else {
        return Ok(()); // goose has recorded the failure
    };
    let body = response.text().await.unwrap_or_default();
    let active = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["active"].as_bool());
    if active != Some(expect == Expect::Active) {
        let tag = format!("expected active={}", expect == Expect::Active);
        return user.set_failure(&tag, &mut goose.request, None, Some(&body));
    }
    Ok(())
}

/// Issues one token and returns it, or `None` when the request failed (goose records why).
async fn issue_one(user: &mut GooseUser) -> Result<Option<String>, Box<TransactionError>> {
    let form = [("grant_type", "client_credentials"), ("scope", "read")];
    let mut goose = post_as(user, &pool().issuer_client, "/oauth/token", "issue", &form).await?;
    let Ok(response) = goose.response else {
        return Ok(None);
    };
    let body = response.text().await.unwrap_or_default();
    let token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["access_token"].as_str().map(str::to_owned));
    match token {
        Some(t) => Ok(Some(t)),
        None => {
            user.set_failure("no access_token", &mut goose.request, None, Some(&body))?;
            Ok(None)
        }
    }
}

async fn issue(user: &mut GooseUser) -> TransactionResult {
    issue_one(user).await.map(|_| ())
}

/// Issues a token and keeps it (a bounded number per user) for `revoke_own`.
async fn issue_and_keep(user: &mut GooseUser) -> TransactionResult {
    if let Some(token) = issue_one(user).await? {
        match user.get_session_data_mut::<Issued>() {
            Some(kept) if kept.0.len() < 64 => kept.0.push(token),
            Some(_) => {}
            None => user.set_session_data(Issued(vec![token])),
        }
    }
    Ok(())
}

/// Revokes a token this user issued (issuing one first if it has none).
async fn revoke_own(user: &mut GooseUser) -> TransactionResult {
    let kept = user.get_session_data_mut::<Issued>().and_then(|k| k.0.pop());
    let token = match kept {
        Some(t) => t,
        None => match issue_one(user).await? {
            Some(t) => t,
            None => return Ok(()),
        },
    };
    let form = [("token", token.as_str())];
    post_as(user, &pool().issuer_client, "/oauth/revoke", "revoke", &form).await?;
    Ok(())
}

/// The value of `--host`/`-H` on goose's command line, which the pool setup needs too.
fn host_from_args(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix("--host=") {
            return v.to_owned();
        }
        if arg == "--host" || arg == "-H" {
            if let Some(v) = it.next() {
                return v.clone();
            }
        }
    }
    "http://127.0.0.1:4000".to_owned()
}

/// The value of `--scenarios`, if given.
fn selected_scenarios(args: &[String]) -> Option<&str> {
    args.iter()
        .position(|a| a == "--scenarios")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--scenarios=")))
}

/// Whether the selected scenarios introspect, and so need the pool.
fn needs_pool(args: &[String]) -> bool {
    match selected_scenarios(args) {
        Some(s) => {
            s.contains("introspect") || s.contains("mixed") || s.split(',').any(|s| s == "api" || s == "apirevoke")
        }
        None => true,
    }
}

/// Whether the selected scenarios sign in, and so need the accounts.
fn needs_accounts(args: &[String]) -> bool {
    selected_scenarios(args).is_none_or(|s| s.contains("codeflow"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let informational = args.iter().any(|a| {
        matches!(
            a.as_str(),
            "-h" | "--help" | "-V" | "--version" | "--scenarios-list" | "-S"
        )
    });
    if !informational {
        let settings = Settings::from_env(host_from_args(&args))?;
        let pool = if needs_pool(&args) {
            Pool::prepare(&settings).await?
        } else {
            Pool::issuance_only(&settings)
        };
        POOL.set(pool).ok().expect("prepared once");
        api::set_base(&std::env::var("LOADTEST_API").unwrap_or_else(|_| "http://127.0.0.1:5000".into()))?;
        if needs_accounts(&args) {
            code_flow::set_accounts(pool::prepare_accounts(&settings).await?);
        }
    }

    GooseAttack::initialize()?
        .register_scenario(scenario!("introspect-storm").register_transaction(transaction!(introspect)))
        .register_scenario(scenario!("issue").register_transaction(transaction!(issue)))
        .register_scenario(
            scenario!("mixed")
                .register_transaction(transaction!(introspect).set_weight(95)?)
                .register_transaction(transaction!(issue_and_keep).set_weight(4)?)
                .register_transaction(transaction!(revoke_own).set_weight(1)?),
        )
        .register_scenario(
            scenario!("code-flow")
                .register_transaction(transaction!(no_redirects).set_on_start())
                .register_transaction(transaction!(code_flow)),
        )
        .register_scenario(
            scenario!("api")
                .register_transaction(transaction!(api_protected).set_weight(6)?)
                .register_transaction(transaction!(api_profile).set_weight(3)?)
                .register_transaction(transaction!(api_data).set_weight(1)?),
        )
        .register_scenario(
            scenario!("api-revoke")
                .register_transaction(transaction!(revoked_or_protected).set_weight(60)?)
                .register_transaction(transaction!(api_profile).set_weight(30)?)
                .register_transaction(transaction!(api_data).set_weight(10)?)
                .register_transaction(transaction!(revoke_live).set_weight(1)?),
        )
        .set_default(GooseDefault::Host, "http://127.0.0.1:4000")?
        .set_default(GooseDefault::Users, 64)?
        .set_default(GooseDefault::IncreaseRate, "64")?
        .set_default(GooseDefault::RunTime, 60)?
        .execute()
        .await?;
    if let Some((revoked, checked, served)) = api::revocation_summary() {
        eprintln!(
            "api-revoke: {revoked} tokens revoked; {checked} API calls with a token revoked over 1 s earlier, {served} of them served"
        );
    }
    if let Some((logins, consent_pages)) = code_flow::summary() {
        // Goose resets its metrics once every user is launched; these count the ramp-up too,
        // where each account's first login (the one that shows the consent page) usually falls.
        eprintln!(
            "code-flow (ramp-up included): {logins} logins got their tokens, {consent_pages} through the consent page"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_host_comes_from_gooses_own_flag() {
        assert_eq!(host_from_args(&args("lt --host http://h:1 -u 4")), "http://h:1");
        assert_eq!(host_from_args(&args("lt --host=http://h:2")), "http://h:2");
        assert_eq!(host_from_args(&args("lt -H http://h:3")), "http://h:3");
        assert_eq!(host_from_args(&args("lt -u 4")), "http://127.0.0.1:4000");
    }

    #[test]
    fn only_introspecting_scenarios_prepare_a_pool() {
        assert!(needs_pool(&args("lt")));
        assert!(needs_pool(&args("lt --scenarios introspectstorm")));
        assert!(needs_pool(&args("lt --scenarios=mixed")));
        assert!(needs_pool(&args("lt --scenarios apirevoke")));
        assert!(!needs_pool(&args("lt --scenarios issue")));
        assert!(!needs_pool(&args("lt --scenarios codeflow")));
    }

    #[test]
    fn only_signing_in_scenarios_prepare_accounts() {
        assert!(needs_accounts(&args("lt")));
        assert!(needs_accounts(&args("lt --scenarios codeflow")));
        assert!(needs_accounts(&args("lt --scenarios=codeflow")));
        assert!(!needs_accounts(&args("lt --scenarios mixed")));
    }
}
