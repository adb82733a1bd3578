//! Property tests of the input parsers: forms, the HTTP Basic client credential, scopes and
//! authorization requests. Each must never panic on any input, and must hold its guarantees
//! (caps, round trips, no repeats, redirects only to registered URIs) on generated inputs.
//! 256 cases each, so the suite stays quick on two cores.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;

use tessera::admin::ClientSpec;
use tessera::config::RawConfig;
use tessera::crypto::ServerKey;
use tessera::oauth::client_auth::presented_client;
use tessera::oauth::form::{encode, FormError, Pairs, MAX_PARAMS};
use tessera::oauth::scope::{MAX_SCOPE_TOKENS, MAX_SCOPE_TOKEN_BYTES};
use tessera::oauth::{AuthorizeError, AuthorizeParams, Scope};
use tessera::store::ClientRecord;

fn config() -> ProptestConfig {
    ProptestConfig {
        // A failure prints its minimal case; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

fn rfc6749_scope_char(c: char) -> bool {
    matches!(c as u32, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Bytes that look like forms more often than uniform bytes would.
fn formish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'&'),
            Just(b'='),
            Just(b'%'),
            Just(b'+'),
            Just(b'a'),
            Just(b'F'),
            Just(b'0'),
            any::<u8>()
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn form_parser_never_panics_and_holds_its_cap(input in formish()) {
        if let Ok(p) = Pairs::parse(&input, &["resource"]) {
            prop_assert!(p.len() <= MAX_PARAMS);
        }
    }

    #[test]
    fn form_parser_reads_back_what_was_encoded(
        pairs in prop::collection::btree_map(".{1,12}", ".{0,24}", 0..20),
        resources in prop::collection::vec(".{0,24}", 0..4),
    ) {
        let pairs: BTreeMap<String, String> =
            pairs.into_iter().filter(|(n, _)| n != "resource").collect();
        let wire = encode(
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
                .chain(resources.iter().map(|r| ("resource", r.as_str()))),
        );
        let parsed = Pairs::parse(wire.as_bytes(), &["resource"]).unwrap();
        prop_assert_eq!(parsed.len(), pairs.len() + resources.len());
        for (n, v) in &pairs {
            prop_assert_eq!(parsed.one(n).unwrap(), Some(v.as_str()));
        }
        prop_assert_eq!(parsed.all("resource").collect::<Vec<_>>(),
                        resources.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn form_parser_refuses_repeats(
        name in "[a-z_]{1,10}",
        first in ".{0,10}",
        second in ".{0,10}",
        others in prop::collection::btree_map("[A-Z]{1,6}", ".{0,10}", 0..5),
    ) {
        prop_assume!(name != "resource");
        let mut list: Vec<(&str, &str)> = others.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        list.insert(0, (&name, &first));
        list.push((&name, &second));
        let wire = encode(list);
        prop_assert_eq!(Pairs::parse(wire.as_bytes(), &["resource"]).unwrap_err(),
                        FormError::Repeated(name.clone()));
    }

    #[test]
    fn basic_header_never_panics(header in ".{0,80}", raw in prop::collection::vec(any::<u8>(), 0..60)) {
        let _ = presented_client(Some(&header), None, None);
        let encoded = format!("Basic {}", STANDARD.encode(&raw));
        let _ = presented_client(Some(&encoded), Some("x"), None);
    }

    #[test]
    fn basic_credentials_round_trip(id in ".{1,24}", secret in ".{0,40}") {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let header = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&id), enc(&secret))));
        let p = presented_client(Some(&header), None, None).unwrap();
        prop_assert_eq!(p.client_id, id);
        prop_assert_eq!(p.secret, secret);
    }

    #[test]
    fn scope_parse_never_panics_and_holds_its_guarantees(raw in ".{0,300}") {
        if let Ok(s) = Scope::parse(&raw) {
            prop_assert!(s.tokens().len() <= MAX_SCOPE_TOKENS);
            let mut seen = HashSet::new();
            for t in s.tokens() {
                prop_assert!(!t.is_empty() && t.len() <= MAX_SCOPE_TOKEN_BYTES);
                prop_assert!(t.chars().all(rfc6749_scope_char), "{:?}", t);
                prop_assert!(seen.insert(t.clone()), "repeated token {:?}", t);
            }
        }
    }

    #[test]
    fn scope_round_trips_through_the_wire(
        tokens in prop::collection::vec("[!#-\\[\\]-~]{1,16}", 0..80),
        spaces in 1usize..3,
    ) {
        let raw = tokens.join(&" ".repeat(spaces));
        match Scope::parse(&raw) {
            Ok(s) => {
                prop_assert!(tokens.len() <= MAX_SCOPE_TOKENS);
                prop_assert_eq!(Scope::parse(&s.to_wire()).unwrap(), s);
            }
            Err(e) => {
                prop_assert!(tokens.len() > MAX_SCOPE_TOKENS);
                prop_assert_eq!(e.code(), "invalid_scope");
            }
        }
    }

    #[test]
    fn authorize_redirects_only_to_registered_uris(
        params in authorize_params(),
        known in any::<bool>(),
        registered in 1usize..=2,
    ) {
        let client = client(registered);
        let result = params.validate(known.then_some(&client));
        if let Err(AuthorizeError::Redirect { redirect_uri, .. }) = &result {
            prop_assert!(known, "a redirect for an unknown client");
            prop_assert!(client.redirect_uris.iter().any(|r| r == redirect_uri),
                         "redirect to unregistered {:?}", redirect_uri);
            if let Some(asked) = &params.redirect_uri {
                prop_assert_eq!(asked, redirect_uri);
            }
        }
        if let Ok(request) = &result {
            prop_assert!(client.redirect_uris.contains(&request.redirect_uri));
            prop_assert!(request.scope.tokens().len() <= MAX_SCOPE_TOKENS);
        }
    }
}

const URIS: [&str; 2] = ["https://app.example/cb", "https://app.example/cb2?x=1"];

/// The client `app` with the first `n` of [`URIS`] registered.
fn client(n: usize) -> ClientRecord {
    let uris: Vec<String> = URIS[..n].iter().map(|u| format!("{u:?}")).collect();
    let toml = format!(
        "[[clients]]\nclient_id = \"app\"\nclient_secret = \"app-secret-1\"\nredirect_uris = [{}]\n\
         grant_types = [\"authorization_code\"]\nscopes = [\"openid\", \"read\"]\n",
        uris.join(", ")
    );
    let raw = RawConfig::from_toml(&toml)
        .unwrap()
        .validate()
        .unwrap()
        .clients
        .remove(0);
    let key = ServerKey::from_bytes(&[7u8; 32]).unwrap();
    ClientSpec::from(raw).into_record(&key).unwrap()
}

/// A value that is usually plausible and sometimes anything.
fn field(good: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(good).prop_map(|s| Some(s.to_owned())),
        ".{0,20}".prop_map(Some),
    ]
}

fn authorize_params() -> impl Strategy<Value = AuthorizeParams> {
    (
        (
            field(&["code", "token"]),
            field(&["app", "other"]),
            field(&[
                URIS[0],
                URIS[1],
                "https://app.example/cb/",
                "https://app.example/CB",
                "https://app.example/cb?x=1",
                "https://evil.example/cb",
            ]),
            field(&["openid", "openid read", "admin"]),
            field(&["xyz"]),
        ),
        (
            field(&["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"]),
            field(&["S256", "plain"]),
            field(&["n-1"]),
            field(&["none", "login", "consent", "select_account"]),
        ),
    )
        .prop_map(
            |(
                (response_type, client_id, redirect_uri, scope, state),
                (code_challenge, code_challenge_method, nonce, prompt),
            )| {
                AuthorizeParams {
                    response_type,
                    client_id,
                    redirect_uri,
                    scope,
                    state,
                    code_challenge,
                    code_challenge_method,
                    nonce,
                    prompt,
                }
            },
        )
}
