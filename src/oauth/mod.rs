//! OAuth protocol rules, free of HTTP and of storage.
//!
//! Everything here is a plain function or type over domain values, so each rule is unit-tested
//! without a server: how forms are parsed, how scopes are parsed and narrowed, how client credentials are read from a
//! request's parts (RFC 6749 §2.3.1), what an authorization request must hold and where its
//! errors go, PKCE, which grant a token request asks for, and the error vocabulary of RFC 6749
//! §5.2 and §4.1.2.1, RFC 7009 §2.2.1, RFC 8707 §2 and OpenID Connect Core §3.1.2.6, and
//! audiences (RFC 8707 resource indicators).

pub mod audience;
pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod form;
pub mod grant;
pub mod pkce;
pub mod scope;

pub use authorize::{AuthorizeError, AuthorizeParams, AuthorizeRequest, Prompt};
pub use client_auth::{ClientAuthMethod, PresentedClient};
pub use error::OAuthError;
pub use form::{FormError, FromPairs, Pairs};
pub use grant::{GrantRequest, GrantType, TokenForm};
pub use scope::Scope;
