//! OAuth protocol rules, free of HTTP and of storage.
//!
//! Everything here is a plain function or type over domain values, so each rule is unit-tested
//! without a server: how scopes are parsed and narrowed, how client credentials are read from a
//! request's parts (RFC 6749 §2.3.1), which grant a token request asks for, and the error
//! vocabulary of RFC 6749 §5.2 and RFC 7009 §2.2.1.

pub mod client_auth;
pub mod error;
pub mod grant;
pub mod scope;

pub use client_auth::{ClientAuthMethod, PresentedClient};
pub use error::OAuthError;
pub use grant::{GrantRequest, GrantType, TokenForm};
pub use scope::Scope;
