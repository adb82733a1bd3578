//! Most integration tests, in one binary: each file beside this one is a module here.
//!
//! One binary links the harness and its dependencies once instead of once per file, which is
//! most of what building the tests costs (about a minute of CPU per test binary in release).
//! A file whose tests read state that belongs to the whole process (the metrics recorder's
//! counts, a captured global log) stays a binary of its own, listed in Cargo.toml; tests here
//! may read `/metrics` only for what other tests cannot change (a series exists, a count is at
//! least one).

mod common;

mod access;
mod accounts;
mod bad_input;
mod browser;
mod cluster;
mod code_flow;
mod crash;
mod demo_browser;
mod feed;
mod interop;
mod oauth_endpoints;
mod oidc;
mod operations;
mod properties;
mod resource_server;
mod store_copy;
mod tls;
