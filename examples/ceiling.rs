//! The ceiling for introspection benchmarks: a bare actix-web endpoint of the same shape as
//! `POST /oauth/introspect` (form body in, small JSON out) that does no work at all. Tessera's
//! rate is quoted as a ratio over this one, measured in the same run on the same machine.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:4900 [workers]`

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Form {
    token: String,
}

#[derive(Serialize)]
struct Answer<'a> {
    active: bool,
    scope: &'a str,
    client_id: &'a str,
    token_type: &'a str,
    exp: u64,
    iat: u64,
    iss: &'a str,
}

async fn introspect(form: web::Form<Form>) -> HttpResponse {
    // Same response size as an active Tessera introspection; the token length keeps the parse.
    let answer = Answer {
        active: !form.token.is_empty(),
        scope: "read write",
        client_id: "demo-client",
        token_type: "Bearer",
        exp: 1_900_003_600,
        iat: 1_900_000_000,
        iss: "http://127.0.0.1:4000",
    };
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(answer)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:4900".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    HttpServer::new(|| App::new().route("/oauth/introspect", web::post().to(introspect)))
        .workers(workers)
        .backlog(2048)
        .bind(bind)?
        .run()
        .await
}
