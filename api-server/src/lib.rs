//! A resource server's side of Tessera: everything an actix-web service needs to accept Tessera's
//! access tokens, plus the demo API and the demo client built on it.

pub mod demo_client;
