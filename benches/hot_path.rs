//! Criterion benchmarks of each part of the introspection and issuance paths, so that a change
//! to one part can be measured on its own before `scripts/bench.sh` measures the whole server.
//!
//! `cargo bench --bench hot_path` (add `-- <filter>` for one group). The store lives under
//! Cargo's target tmp directory, on the same disk as a real data directory, so the flush
//! figures include a real `fsync`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{middleware, test, web, App};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand::seq::SliceRandom;

use tessera::actors::ShardRouter;
use tessera::admin::ClientSpec;
use tessera::authority::{Authority, AuthorityConfig};
use tessera::config::RawClient;
use tessera::crypto::{mint_token, ServerKey, TokenDigest, TokenKind};
use tessera::http::{self, AppState};
use tessera::oauth::client_auth::presented_client;
use tessera::oauth::{AuthorizeError, AuthorizeParams, FromPairs, GrantType};
use tessera::signing::{Algorithm, SigningKeys};
use tessera::store::{Store, TokenClaims, TokenPartition, TokenRecord};

/// Live tokens in the benchmark store, as in `scripts/bench.sh`.
const POOL: usize = 100_000;
const SHARDS: usize = 2;
/// `api-server:api-secret`, base64.
const BASIC: &str = "Basic YXBpLXNlcnZlcjphcGktc2VjcmV0";
/// The redirect URI of `browser-client`, the client of the hostile authorization requests.
const REDIRECT: &str = "http://127.0.0.1:3001/callback";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    key: ServerKey,
    partitions: Vec<TokenPartition>,
    tokens: Vec<String>,
}

fn record(now: u64) -> TokenRecord {
    TokenRecord {
        claims: Arc::new(TokenClaims::for_client("demo-client", "read write")),
        iat: now,
        exp: now + 24 * 3600,
    }
}

fn fixture() -> Fixture {
    // As in the server: recording metrics is part of the cost being measured.
    tessera::metrics::install();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = Store::open(dir.path(), 256 << 20).expect("store");
    let key = ServerKey::from_bytes(&ServerKey::generate()).expect("key");
    let clients = store.clients().expect("clients");
    for (id, secret, grants) in [
        ("api-server", "api-secret", vec![]),
        ("demo-client", "demo-secret", vec![GrantType::ClientCredentials]),
        ("browser-client", "browser-secret", vec![GrantType::AuthorizationCode]),
    ] {
        let redirect_uris = match grants.first() {
            Some(GrantType::AuthorizationCode) => vec![REDIRECT.into()],
            _ => vec![],
        };
        let raw = RawClient {
            client_id: id.into(),
            client_secret: secret.into(),
            redirect_uris,
            grant_types: grants,
            scopes: vec!["read".into(), "write".into()],
            post_logout_redirect_uris: vec![],
            introspect: None,
            resource: None,
            rate_limit_per_sec: 0,
            refresh_tokens: Default::default(),
        };
        clients
            .upsert(ClientSpec::from(raw).into_record(&key).expect("client"))
            .expect("upsert");
    }
    let now = tessera::unix_now();
    let mut partitions = store.partitions(SHARDS, now).expect("partitions");
    let tokens: Vec<String> = (0..POOL)
        .map(|_| {
            let token = mint_token(TokenKind::Access);
            let digest = key.token_digest(&token);
            partitions[digest.shard(SHARDS)]
                .insert(&digest, record(now))
                .expect("insert");
            token
        })
        .collect();
    store.flush().expect("flush");
    Fixture {
        _dir: dir,
        store,
        key,
        partitions,
        tokens,
    }
}

fn crypto(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("crypto");
    g.bench_function("mint_token", |b| b.iter(|| mint_token(TokenKind::Access)));
    let token = &f.tokens[0];
    g.bench_function("token_digest", |b| {
        b.iter(|| f.key.token_digest(std::hint::black_box(token)))
    });
    g.finish();
}

fn store(c: &mut Criterion, f: &mut Fixture) {
    let mut g = c.benchmark_group("store");
    let digests: Vec<TokenDigest> = f.tokens.iter().map(|t| f.key.token_digest(t)).collect();
    let mut i = 0usize;
    g.bench_function("get_random_of_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % digests.len();
            let d = &digests[i];
            f.partitions[d.shard(SHARDS)].get(d).expect("present").exp
        })
    });
    let now = tessera::unix_now();
    g.bench_function("put_unflushed", |b| {
        b.iter_batched(
            || f.key.token_digest(&mint_token(TokenKind::Access)),
            |d| f.partitions[d.shard(SHARDS)].insert(&d, record(now)).expect("insert"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// What a restart costs: every partition read from sled into memory, in parallel. Runs before
/// anything writes more tokens, so it loads exactly the pool.
fn load(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("store");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let now = tessera::unix_now();
    g.bench_function("load_100k", |b| {
        b.iter(|| {
            let loaded: usize = f
                .store
                .partitions(SHARDS, now)
                .expect("load")
                .iter()
                .map(TokenPartition::len)
                .sum();
            assert_eq!(loaded, POOL);
        })
    });
    g.finish();
}

fn authority(f: &Fixture, router: &ShardRouter) -> Authority {
    let keys = SigningKeys::load_or_create(f._dir.path(), Algorithm::ES256, tessera::unix_now()).expect("keys");
    let event_keys = SigningKeys::load_or_create(&f._dir.path().join("events"), Algorithm::ES256, tessera::unix_now())
        .expect("keys");
    Authority::new(
        f.key.clone(),
        f.store.clients().expect("clients"),
        f.store.users().expect("users"),
        router.clone(),
        keys,
        event_keys,
        AuthorityConfig::new("http://127.0.0.1:4000"),
    )
}

/// Actor and HTTP benchmarks run inside one actix system; each measurement awaits `iters`
/// operations in a row on the system's thread, as an HTTP worker would.
fn actors_and_http(c: &mut Criterion, f: &mut Fixture) {
    let sys = actix_rt::System::new();
    let now = tessera::unix_now();
    let commit = Arc::new(f.store.group_commit(Duration::ZERO));
    let (router, service) = sys.block_on(async {
        let partitions = f.store.partitions(SHARDS, now).expect("partitions");
        let router = ShardRouter::start(partitions, 1, Arc::clone(&commit), Duration::from_secs(3600));
        let authority = authority(f, &router);
        let ops = tessera::operations::Operations::new(authority.clone(), Default::default(), None);
        let feed = tessera::feed::Feed::new(authority.clone(), Arc::clone(f.store.changes()), Duration::from_secs(1));
        let state = web::Data::new(AppState {
            authority,
            ops,
            admin_digest: f.key.admin_digest("unused"),
            session_ttl: 3600,
            feed,
        });
        let app = |state: web::Data<AppState>, limits| {
            App::new()
                .wrap(middleware::from_fn(http::edge))
                .configure(http::configure(state, limits, true))
        };
        let service = test::init_service(app(state.clone(), http::InputLimits::default())).await;
        // The largest query bound the configuration allows, so that hostile scopes reach the
        // scope cap instead of the query bound.
        let wide = http::InputLimits {
            max_query_bytes: 64 * 1024,
            ..http::InputLimits::default()
        };
        let wide_service = test::init_service(app(state, wide)).await;
        (router, (service, wide_service))
    });
    let (service, wide_service) = service;
    let authority_for_auth = sys.block_on(async { authority(f, &router) });
    let mut shuffled = f.tokens.clone();
    shuffled.shuffle(&mut rand::thread_rng());

    let mut g = c.benchmark_group("client_auth");
    g.bench_function("basic_header_parse_and_hmac", |b| {
        b.iter(|| {
            let presented = presented_client(Some(BASIC), None, None).expect("parse");
            authority_for_auth
                .authenticate(&presented, None)
                .expect("authenticated")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("shard");
    g.bench_function("introspect_round_trip", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let started = Instant::now();
                for n in 0..iters as usize {
                    let digest = f.key.token_digest(&shuffled[n % shuffled.len()]);
                    let found = router.introspect(digest, now).await;
                    assert!(matches!(found, Ok(tessera::actors::Lookup::Live(_))));
                }
                started.elapsed()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("group_commit");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for writes in [1usize, 64] {
        g.bench_function(format!("flush_{writes}_writes"), |b| {
            b.iter_custom(|iters| {
                sys.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        // Written past the shards (the benchmark's own fresh keys, which no
                        // shard reads) so that only the flush is timed.
                        for _ in 0..writes {
                            let d = f.key.token_digest(&mint_token(TokenKind::Access));
                            f.partitions[d.shard(SHARDS)].insert(&d, record(now)).expect("insert");
                        }
                        let started = Instant::now();
                        commit.durable().await.expect("durable");
                        spent += started.elapsed();
                    }
                    spent
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("http");
    g.bench_function("introspection_in_process", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let started = Instant::now();
                for n in 0..iters as usize {
                    let req = test::TestRequest::post()
                        .uri("/oauth/introspect")
                        .insert_header(("authorization", BASIC))
                        .insert_header(("content-type", "application/x-www-form-urlencoded"))
                        .set_payload(format!("token={}", shuffled[n % shuffled.len()]))
                        .to_request();
                    let res = test::call_service(&service, req).await;
                    assert!(res.status().is_success());
                }
                started.elapsed()
            })
        })
    });
    g.finish();

    // Hostile requests: how much server CPU each costs before it is refused. Requests whose URI
    // fits the `http` crate (64 KiB) go through the in-process service; larger ones cannot reach
    // Tessera over HTTP at all (actix-http refuses them), so their parsing and validation, what
    // the handler would run, is timed directly.
    let mut g = c.benchmark_group("hostile");
    type MakeRequest = Box<dyn Fn() -> test::TestRequest>;
    // (name, whether it needs the wide query bound, the request, the expected status)
    let requests: Vec<(&str, bool, MakeRequest, u16)> = vec![
        (
            "authorize_scope_9k_distinct_tokens",
            true,
            Box::new(|| {
                test::TestRequest::get().uri(&format!(
                    "/oauth/authorize?{}",
                    authorize_query(&distinct_tokens(9_000))
                ))
            }),
            303,
        ),
        (
            "authorize_scope_one_60k_token",
            true,
            Box::new(|| {
                test::TestRequest::get().uri(&format!("/oauth/authorize?{}", authorize_query(&"x".repeat(60 * 1024))))
            }),
            303,
        ),
        (
            "authorize_query_over_8k",
            false,
            Box::new(|| {
                test::TestRequest::get().uri(&format!("/oauth/authorize?{}", authorize_query(&"x".repeat(9 * 1024))))
            }),
            414,
        ),
        (
            "login_body_over_limit",
            false,
            Box::new(|| {
                test::TestRequest::post()
                    .uri("/oauth/login")
                    .insert_header(("content-type", "application/x-www-form-urlencoded"))
                    .set_payload(format!("username={}", "x".repeat(64 * 1024)))
            }),
            413,
        ),
        (
            "userinfo_body_over_limit",
            false,
            Box::new(|| {
                test::TestRequest::post()
                    .uri("/oauth/userinfo")
                    .insert_header(("content-type", "application/x-www-form-urlencoded"))
                    .set_payload(format!("access_token={}", "x".repeat(64 * 1024)))
            }),
            413,
        ),
        (
            "introspect_100_parameters",
            false,
            Box::new(|| {
                let many: Vec<String> = (0..100).map(|i| format!("p{i}=v")).collect();
                test::TestRequest::post()
                    .uri("/oauth/introspect")
                    .insert_header(("authorization", BASIC))
                    .insert_header(("content-type", "application/x-www-form-urlencoded"))
                    .set_payload(many.join("&"))
            }),
            400,
        ),
    ];
    for (name, wide_query, make, status) in requests {
        let svc = if wide_query { &wide_service } else { &service };
        g.bench_function(name, |b| {
            b.iter_batched(
                || make().to_request(),
                |req| {
                    sys.block_on(async {
                        let res = test::call_service(svc, req).await;
                        assert_eq!(res.status().as_u16(), status, "{name}");
                    })
                },
                BatchSize::SmallInput,
            )
        });
    }
    let client = f
        .store
        .clients()
        .expect("clients")
        .get("browser-client")
        .expect("client");
    for (name, scope) in [
        ("validate_scope_50k_distinct_tokens", distinct_tokens(50_000)),
        ("validate_scope_one_100k_token", "x".repeat(100 * 1024)),
    ] {
        let query = authorize_query(&scope);
        g.bench_function(name, |b| {
            b.iter(|| {
                let params = AuthorizeParams::parse_form(query.as_bytes()).expect("parses");
                let refused = params.validate(Some(&client));
                assert!(matches!(refused, Err(AuthorizeError::Redirect { .. })));
            })
        });
    }
    g.finish();
}

/// An authorization request by `browser-client` for `scope`, as a query string.
fn authorize_query(scope: &str) -> String {
    tessera::oauth::form::encode([
        ("response_type", "code"),
        ("client_id", "browser-client"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ])
}

/// `n` distinct scope tokens of RFC 6749 §3.3 characters.
fn distinct_tokens(n: usize) -> String {
    (0..n).map(|i| format!("s{i:x}")).collect::<Vec<_>>().join(" ")
}

fn hot_path(c: &mut Criterion) {
    let mut f = fixture();
    crypto(c, &f);
    load(c, &f);
    store(c, &mut f);
    actors_and_http(c, &mut f);
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
