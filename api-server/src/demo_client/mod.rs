//! The demo client: a small web application that signs a user in with Tessera (authorization
//! code flow with PKCE S256, OpenID Connect), then calls the demo API with the access token,
//! refreshes, revokes and signs out, showing each step's result on one page.
//!
//! It is a confidential client: the code is exchanged, and tokens refreshed and revoked, on its
//! server (client_secret_basic), and the tokens stay there, in a server-side session the browser
//! knows only by a random id in an HttpOnly, SameSite=Lax cookie. Every state-changing request is
//! a POST carrying the session's CSRF token. The one exception to "tokens never reach the
//! browser" is the ID token sent as `id_token_hint` on sign-out, as RP-initiated logout defines.
//!
//! Guarantees: no token, code, verifier or secret is logged or sent to the browser (the ID token
//! on sign-out aside); bad input gets a 400 page, an unreachable Tessera or API a page saying
//! so, never a 500; sessions are bounded in number (10,000) and idle time (one hour).
//!
//! Modules: `protocol` (pure OAuth/OIDC rules), `session` (the bounded session store),
//! `backchannel` (HTTP calls to Tessera and the API), `pages` (templates), `handlers` (routes).

mod backchannel;
mod handlers;
mod pages;
mod protocol;
mod session;

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};

use backchannel::Backchannel;
use session::SessionStore;

/// Sessions beyond this many evict the least recently used; a demo serves a handful of browsers,
/// and the bound keeps a flood of `/login` requests from growing memory without limit.
const MAX_SESSIONS: usize = 10_000;

/// A session unused this long is forgotten, tokens and all.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the demo client finds Tessera and the API, and how it is registered at Tessera.
#[derive(Clone)]
pub struct DemoClientConfig {
    /// Tessera's base URL, e.g. `http://127.0.0.1:4000` (a trailing slash is fine).
    pub tessera_url: String,
    /// The demo API's base URL, e.g. `http://127.0.0.1:5000`.
    pub api_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// This client's callback as registered at Tessera, e.g. `http://127.0.0.1:3001/callback`;
    /// its origin followed by `/` is the post-logout redirect URI.
    pub redirect_uri: String,
    /// The scopes to ask for, space-separated.
    pub scope: String,
}

/// Shows everything but the secret, so a configuration can be logged safely.
impl std::fmt::Debug for DemoClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoClientConfig")
            .field("tessera_url", &self.tessera_url)
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    config: DemoClientConfig,
    /// Where Tessera sends the browser after sign-out: the home page, on the callback's origin.
    home_url: String,
    /// Cookies are marked Secure when the client is served over HTTPS (judged from its redirect
    /// URI), and not otherwise, or a browser on plain HTTP would drop them.
    secure_cookies: bool,
    sessions: SessionStore,
    backchannel: Backchannel,
}

impl AppState {
    fn new(config: DemoClientConfig) -> std::io::Result<Self> {
        let home_url = protocol::home_url(&config.redirect_uri).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the redirect URI {:?} is not an absolute URL", config.redirect_uri),
            )
        })?;
        let backchannel = Backchannel::new(
            &config.tessera_url,
            &config.api_url,
            &config.client_id,
            &config.client_secret,
        )?;
        Ok(AppState {
            secure_cookies: config.redirect_uri.starts_with("https://"),
            home_url,
            sessions: SessionStore::new(MAX_SESSIONS, IDLE_TIMEOUT),
            backchannel,
            config,
        })
    }
}

/// Starts the demo client on an already-bound listener (tests bind 127.0.0.1:0 first so they know
/// the redirect URI before Tessera starts). The caller awaits or spawns the returned server.
/// Fails if the redirect URI is not an absolute URL or the HTTP client cannot be built.
pub fn start(config: DemoClientConfig, listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(AppState::new(config)?);
    let server = HttpServer::new(move || app(state.clone()))
        // A demo serves a few browsers; two workers keep it responsive without a thread per core.
        .workers(2)
        .listen(listener)?
        .run();
    Ok(server)
}

/// The application: routes, form limits and error pages, and headers on every answer.
fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(
            web::FormConfig::default()
                .limit(16 * 1024)
                .error_handler(handlers::bad_form),
        )
        .wrap(
            DefaultHeaders::new()
                // Pages show session-specific data and carry CSRF tokens: never cache them.
                .add(("Cache-Control", "no-store"))
                .add(("Referrer-Policy", "no-referrer"))
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add((
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
                )),
        )
        .route("/", web::get().to(handlers::index))
        .route("/login", web::get().to(handlers::login))
        .route("/callback", web::get().to(handlers::callback))
        .route("/call/{endpoint}", web::post().to(handlers::call))
        .route("/refresh", web::post().to(handlers::refresh))
        .route("/revoke", web::post().to(handlers::revoke))
        .route("/logout", web::post().to(handlers::logout))
        .default_service(web::to(handlers::not_found))
}

#[cfg(test)]
mod tests;
