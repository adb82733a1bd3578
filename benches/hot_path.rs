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
use tessera::oauth::GrantType;
use tessera::signing::{Algorithm, SigningKeys};
use tessera::store::{GroupCommit, Store, TokenClaims, TokenPartition, TokenRecord};

/// Live tokens in the benchmark store, as in `scripts/bench.sh`.
const POOL: usize = 100_000;
const SHARDS: usize = 2;
/// `api-server:api-secret`, base64.
const BASIC: &str = "Basic YXBpLXNlcnZlcjphcGktc2VjcmV0";

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
    ] {
        let raw = RawClient {
            client_id: id.into(),
            client_secret: secret.into(),
            redirect_uris: vec![],
            grant_types: grants,
            scopes: vec!["read".into(), "write".into()],
            post_logout_redirect_uris: vec![],
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
    store.db().flush().expect("flush");
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
    Authority::new(
        f.key.clone(),
        f.store.clients().expect("clients"),
        f.store.users().expect("users"),
        router.clone(),
        keys,
        AuthorityConfig::new("http://127.0.0.1:4000"),
    )
}

/// Actor and HTTP benchmarks run inside one actix system; each measurement awaits `iters`
/// operations in a row on the system's thread, as an HTTP worker would.
fn actors_and_http(c: &mut Criterion, f: &mut Fixture) {
    let sys = actix_rt::System::new();
    let now = tessera::unix_now();
    let commit = Arc::new(GroupCommit::start(f.store.db().clone(), Duration::ZERO));
    let (router, service) = sys.block_on(async {
        let partitions = f.store.partitions(SHARDS, now).expect("partitions");
        let router = ShardRouter::start(partitions, 1, Arc::clone(&commit), Duration::from_secs(3600));
        let authority = authority(f, &router);
        let state = web::Data::new(AppState {
            authority,
            admin_digest: f.key.admin_digest("unused"),
            session_ttl: 3600,
        });
        let service = test::init_service(
            App::new()
                .wrap(middleware::from_fn(http::observe))
                .configure(http::configure(state, 16 * 1024, true)),
        )
        .await;
        (router, service)
    });
    let authority_for_auth = sys.block_on(async { authority(f, &router) });
    let mut shuffled = f.tokens.clone();
    shuffled.shuffle(&mut rand::thread_rng());

    let mut g = c.benchmark_group("client_auth");
    g.bench_function("basic_header_parse_and_hmac", |b| {
        b.iter(|| {
            let presented = presented_client(Some(BASIC), None, None).expect("parse");
            authority_for_auth.authenticate(&presented).expect("authenticated")
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
                    assert!(matches!(found, Ok(Some(_))));
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
