//! Interop with an OpenID Connect client this project did not write: the `openidconnect` crate
//! discovers a real Tessera, runs the code flow with PKCE (the login and consent pages driven by
//! the test browser), validates ID tokens against the JWKS, reads userinfo, and refreshes with
//! rotation and reuse detection, once per ID-token algorithm.

use crate::common;

use common::browser::{Browser, REDIRECT};
use common::TestServer;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    reqwest, AccessToken, AccessTokenHash, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenVerifier, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope, SubjectIdentifier, TokenResponse,
    UserInfoError,
};

/// What `CoreClient::from_provider_metadata` gives: the authorization endpoint set, the token
/// and userinfo endpoints set if the metadata had them.
type Rp = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The relying party's HTTP client. It must not follow redirects (the crate's documentation: a
/// client that does is open to SSRF).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Discovery, then a client for demo-client authenticating at the token endpoint with `auth`.
async fn discover(s: &TestServer, http: &reqwest::Client, auth: AuthType) -> (CoreProviderMetadata, Rp) {
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), http)
        .await
        .unwrap_or_else(|e| panic!("discovery: {e:?}"));
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new("demo-client".into()),
        Some(ClientSecret::new("demo-secret".into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_auth_type(auth);
    (metadata, client)
}

/// The code flow with PKCE, as far as the token response: the crate builds the authorization
/// URL, the test browser signs in as alice and consents, the crate exchanges the code.
async fn sign_in(s: &TestServer, http: &reqwest::Client, rp: &Rp) -> (CoreTokenResponse, Nonce) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(s.url("/oauth/authorize").as_str()),
        "the authorization endpoint from discovery"
    );
    let query = url.query().expect("an authorization request has a query");
    let redirect = Browser::new(s).approve(query).await;
    assert_eq!(&redirect["state"], csrf.secret(), "the state comes back unchanged");
    // RFC 9207: the crate leaves `iss` to the application; a careful one checks it.
    assert_eq!(redirect["iss"], s.base);

    let tokens = rp
        .exchange_code(AuthorizationCode::new(redirect["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e:?}"));
    (tokens, nonce)
}

/// Checks `at_hash` the way the crate's documentation does: computed with the algorithm and key
/// that signed the ID token.
fn assert_at_hash(
    id_token: &CoreIdToken,
    claims: &CoreIdTokenClaims,
    verifier: &IdTokenVerifier<'_, openidconnect::core::CoreJsonWebKey>,
    access: &AccessToken,
) {
    let expected = claims.access_token_hash().expect("an at_hash claim");
    let actual = AccessTokenHash::from_token(
        access,
        id_token.signing_alg().unwrap(),
        id_token.signing_key(verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected, "at_hash matches the access token");
}

/// Userinfo through the crate, which also checks that its `sub` is `sub`.
async fn user_info(
    rp: &Rp,
    http: &reqwest::Client,
    access: &AccessToken,
    sub: &SubjectIdentifier,
) -> Result<CoreUserInfoClaims, UserInfoError<openidconnect::HttpClientError<reqwest::Error>>> {
    rp.user_info(access.clone(), Some(sub.clone()))
        .unwrap()
        .request_async(http)
        .await
}

/// Discovery, the code flow, ID token, userinfo and refresh, all through the crate, against a
/// server signing ID tokens with `alg`, with the client authenticating with `auth`.
async fn full_flow(alg: CoreJwsSigningAlgorithm, alg_name: &str, auth: AuthType) {
    let s = TestServer::start(&format!("id_token_alg = \"{alg_name}\"")).await;
    let http = http_client();

    // 1. Discovery (the crate also fetched the JWKS and checked the issuer).
    let (metadata, rp) = discover(&s, &http, auth).await;
    assert_eq!(metadata.issuer().as_str(), s.base);
    // The server's algorithm, and RS256, which OpenID Connect Discovery §3 says must be listed.
    let algs = metadata.id_token_signing_alg_values_supported();
    assert!(
        algs.contains(&alg) && algs.contains(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        "{algs:?}"
    );
    let keys = metadata.jwks().keys();
    assert!(!keys.is_empty(), "the JWKS has a key");
    assert!(rp.user_info_url().is_some(), "discovery gave a userinfo endpoint");

    // 2. The code flow with PKCE.
    let (tokens, nonce) = sign_in(&s, &http, &rp).await;
    let access = tokens.access_token().clone();
    let refresh = tokens.refresh_token().expect("a refresh token").clone();
    let scopes: Vec<&str> = tokens
        .scopes()
        .map_or(vec![], |v| v.iter().map(|s| s.as_str()).collect());
    assert_eq!(scopes, ["openid", "profile", "email"]);

    // 3. The ID token, validated against the JWKS.
    let verifier = rp.id_token_verifier();
    let id_token = tokens.id_token().expect("an ID token");
    assert_eq!(id_token.signing_alg().unwrap(), &alg);
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("ID token: {e:?}"));
    let sub = claims.subject().clone();
    assert!(!sub.as_str().is_empty());
    assert_eq!(claims.issuer().as_str(), s.base);
    assert!(claims.audiences().iter().any(|a| a.as_str() == "demo-client"));
    assert_eq!(claims.nonce().map(|n| n.secret()), Some(nonce.secret()));
    let auth_time = claims.auth_time().expect("auth_time");
    assert!(auth_time <= claims.issue_time());
    assert_at_hash(id_token, claims, &verifier, &access);

    // 4. Userinfo, with the crate checking its subject is the ID token's.
    let info = user_info(&rp, &http, &access, &sub)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {e:?}"));
    assert_eq!(info.subject(), &sub);
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));
    assert_eq!(
        info.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Alice Liddell")
    );
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));

    // 5. Refresh: new tokens, and a new ID token about the same authentication.
    let refreshed = rp
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("refresh: {e:?}"));
    let new_access = refreshed.access_token().clone();
    let new_refresh = refreshed.refresh_token().expect("a rotated refresh token").clone();
    assert_ne!(new_access.secret(), access.secret());
    assert_ne!(new_refresh.secret(), refresh.secret(), "the refresh token rotates");
    let new_id_token = refreshed.id_token().expect("an ID token on refresh");
    // OIDC Core §12.2: no nonce is required on refresh; if there is one it is the original's.
    let original = nonce.clone();
    let new_claims = new_id_token
        .claims(&verifier, |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(n) if n.secret() == original.secret() => Ok(()),
            Some(n) => Err(format!("unexpected nonce {:?} on refresh", n.secret())),
        })
        .unwrap_or_else(|e| panic!("refreshed ID token: {e:?}"));
    assert_eq!(new_claims.subject(), &sub, "§12.2: the same sub");
    assert_eq!(new_claims.issuer(), claims.issuer(), "§12.2: the same iss");
    assert_eq!(new_claims.audiences(), claims.audiences(), "§12.2: the same aud");
    assert_eq!(new_claims.auth_time(), Some(auth_time), "§12.2: the original auth_time");
    assert_at_hash(new_id_token, new_claims, &verifier, &new_access);
    let info = user_info(&rp, &http, &new_access, &sub).await.unwrap();
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));

    // Reusing the spent refresh token is invalid_grant, and revokes the family.
    match rp.exchange_refresh_token(&refresh).unwrap().request_async(&http).await {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(e.error(), &CoreErrorResponseType::InvalidGrant, "{e:?}")
        }
        other => panic!("reusing a spent refresh token: {other:?}"),
    }
    match user_info(&rp, &http, &new_access, &sub).await {
        Err(UserInfoError::Response(status, _, _)) => assert_eq!(status.as_u16(), 401),
        other => panic!("userinfo after reuse detection: {other:?}"),
    }
    let again = rp
        .exchange_refresh_token(&new_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(
        matches!(&again, Err(RequestTokenError::ServerResponse(e)) if *e.error() == CoreErrorResponseType::InvalidGrant),
        "the rotated refresh token went with the family: {again:?}"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn rs256_discovery_code_flow_id_token_userinfo_refresh() {
    full_flow(
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        "RS256",
        AuthType::BasicAuth,
    )
    .await;
}

/// ES256, and client_secret_post at the token endpoint for good measure.
#[actix_rt::test]
async fn es256_discovery_code_flow_id_token_userinfo_refresh() {
    full_flow(CoreJwsSigningAlgorithm::EcdsaP256Sha256, "ES256", AuthType::RequestBody).await;
}

/// The crate refuses an ID token with the wrong nonce, or meant for another client.
#[actix_rt::test]
async fn the_crate_rejects_a_wrong_nonce_and_a_wrong_audience() {
    let s = TestServer::start("id_token_alg = \"RS256\"").await;
    let http = http_client();
    let (_, rp) = discover(&s, &http, AuthType::BasicAuth).await;
    let (tokens, nonce) = sign_in(&s, &http, &rp).await;
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = rp.id_token_verifier();
    assert!(id_token.claims(&verifier, &nonce).is_ok());

    let wrong = Nonce::new("not-the-nonce-that-was-sent".into());
    match id_token.claims(&verifier, &wrong) {
        Err(ClaimsVerificationError::InvalidNonce(_)) => {}
        other => panic!("a wrong nonce: {other:?}"),
    }
    match id_token.claims(&verifier, |_: Option<&Nonce>| {
        Err::<(), _>("no nonce expected".to_owned())
    }) {
        Err(ClaimsVerificationError::InvalidNonce(_)) => {}
        other => panic!("a nonce verifier that refuses: {other:?}"),
    }
    let other_client = CoreClient::from_provider_metadata(
        CoreProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), &http)
            .await
            .unwrap(),
        ClientId::new("other-client".into()),
        Some(ClientSecret::new("other-secret".into())),
    );
    match id_token.claims(&other_client.id_token_verifier(), &nonce) {
        Err(ClaimsVerificationError::InvalidAudience(_)) => {}
        other => panic!("demo-client's ID token at other-client: {other:?}"),
    }
    s.stop().await;
}
