//! Fills a data directory with live client-credentials tokens for load tests, writing the raw
//! tokens (one per line) to a file for the load generator. Runs against the store directly,
//! with the server stopped, so a pool of a million tokens takes seconds, not a load test of its own.
//!
//! `cargo run --release --example seed_tokens -- DATA_DIR COUNT OUT_FILE [SHARDS]`

use std::sync::Arc;
use tessera::crypto::{mint_token, TokenKind};

use tessera::store::{Store, TokenClaims, TokenRecord};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: seed_tokens DATA_DIR COUNT OUT_FILE [SHARDS]");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[0]);
    let count: usize = args[1].parse().expect("COUNT is a number");
    let shards: usize = args.get(3).map(|s| s.parse().expect("SHARDS is a number")).unwrap_or(2);
    tessera::datadir::ensure_dir(dir).expect("data dir");
    let key = tessera::datadir::load_server_key(None, &dir.join("server.key")).expect("server key");
    let store = Store::open(dir, 256 << 20).expect("store (is the server running?)");
    let now = tessera::unix_now();
    let mut parts = store.partitions(shards, now).expect("partitions");
    let claims = Arc::new(TokenClaims::for_client("demo-client", "read write"));
    let mut out = String::with_capacity(count * 48);
    for _ in 0..count {
        let token = mint_token(TokenKind::Access);
        let digest = key.token_digest(&token);
        let record = TokenRecord {
            claims: Arc::clone(&claims),
            iat: now,
            exp: now + 24 * 3600,
        };
        parts[digest.shard(shards)].insert(&digest, record).expect("insert");
        out.push_str(&token);
        out.push('\n');
    }
    store.flush().expect("flush");
    std::fs::write(&args[2], out).expect("writing the token file");
    eprintln!("seeded {count} tokens into {} ({shards} shards)", dir.display());
}
