//! Keys, token minting and digests.
//!
//! Every secret that Tessera stores or compares goes through this module:
//! - bearer tokens and client secrets are reduced to `HMAC-SHA256(server key, value)` before they
//!   reach a shard, the disk or a log, so a copy of the data directory without the server key
//!   reveals no usable credential;
//! - comparisons of digests are constant-time (`subtle`), so response timing says nothing about
//!   how much of a guessed secret was right.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of a server key in bytes.
pub const SERVER_KEY_LEN: usize = 32;

/// Bytes of randomness in a minted token (256 bits).
const TOKEN_ENTROPY: usize = 32;

/// The server's secret key. Held once in memory; cloned as an `Arc` by whoever digests.
#[derive(Clone)]
pub struct ServerKey {
    /// Keyed state prepared once, so each digest only clones 2×64 bytes instead of re-keying.
    mac: HmacSha256,
}

impl ServerKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < SERVER_KEY_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyError::TooShort(bytes.len()))?;
        Ok(Self { mac })
    }

    /// A fresh random key, as written on first start.
    pub fn generate() -> [u8; SERVER_KEY_LEN] {
        let mut key = [0u8; SERVER_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        key
    }

    /// `HMAC-SHA256(key, domain ‖ 0x00 ‖ value)`. The domain separates token digests from secret
    /// digests, so a token can never be replayed as a client secret or the other way round.
    fn digest(&self, domain: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    pub fn token_digest(&self, token: &str) -> TokenDigest {
        TokenDigest(self.digest(b"token", token.as_bytes()))
    }

    /// Digest of an authorization code; routed and stored like a token digest.
    pub fn code_digest(&self, code: &str) -> TokenDigest {
        TokenDigest(self.digest(b"authorization-code", code.as_bytes()))
    }

    pub fn secret_digest(&self, secret: &str) -> SecretDigest {
        SecretDigest(self.digest(b"client-secret", secret.as_bytes()))
    }

    /// An HMAC tag of `value` under `domain`, for values the server hands out and later takes
    /// back unchanged (session cookies, CSRF tokens). Compare tags with [`tags_match`].
    pub fn tag(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        self.digest(domain.as_bytes(), value)
    }

    /// A public name for a stored digest (a token family, later a token): 128 bits of
    /// `HMAC(key, domain ‖ digest)`, base64url. It names the thing in audit events and exports
    /// without revealing the digest it comes from, and nothing can be looked up by it.
    pub fn opaque_id(&self, domain: &str, digest: &TokenDigest) -> String {
        let tag = self.digest(domain.as_bytes(), &digest.0);
        URL_SAFE_NO_PAD.encode(&tag[..16])
    }

    pub fn admin_digest(&self, secret: &str) -> SecretDigest {
        SecretDigest(self.digest(b"admin", secret.as_bytes()))
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("server key must be at least {SERVER_KEY_LEN} bytes, got {0}")]
    TooShort(usize),
}

/// The only form in which a token is stored or routed. Its first eight bytes choose the shard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    /// The shard that owns this token among `shards`. A pure function of the digest, so any
    /// thread can route a token without a lookup table.
    pub fn shard(&self, shards: usize) -> usize {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        (u64::from_le_bytes(head) % shards as u64) as usize
    }
}

impl std::fmt::Debug for TokenDigest {
    // A digest is not a secret, but a short prefix is all a log line needs to correlate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenDigest({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Digest of a client secret (or of the admin credential), as stored.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct SecretDigest(pub [u8; 32]);

impl SecretDigest {
    /// Constant-time equality: the time taken does not depend on where the digests differ.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// Constant-time equality of two byte strings (of possibly different lengths: the length is
/// not secret).
pub fn tags_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Kinds of token, visible in the token's prefix so a leaked string is recognisable by
/// secret scanners. The prefix carries no authority: only the stored record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    AuthorizationCode,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Access => "tsa_",
            TokenKind::Refresh => "tsr_",
            TokenKind::AuthorizationCode => "tsc_",
        }
    }
}

/// An argon2id hash of `password` in PHC string form, with a fresh random salt. The parameters
/// are argon2's defaults (19 MiB, 2 passes, 1 lane: the OWASP minimum for argon2id), recorded
/// in the string, so they can be raised later without invalidating stored hashes.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash matches nothing. The
/// comparison inside argon2's verifier is constant-time.
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new bearer token: a kind prefix and 256 bits from the thread-local CSPRNG, base64url.
pub fn mint_token(kind: TokenKind) -> String {
    random_string(kind.prefix(), TOKEN_ENTROPY)
}

/// A random string of `bytes` bytes of entropy, base64url, after `prefix`.
pub fn random_string(prefix: &str, bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    let mut out = String::with_capacity(prefix.len() + bytes * 4 / 3 + 2);
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(&raw, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ServerKey {
        ServerKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ServerKey::from_bytes(&[0u8; 16]).is_err());
    }

    #[test]
    fn digests_depend_on_key_and_domain() {
        let (a, b) = (key(1), key(2));
        assert_ne!(a.token_digest("x").0, b.token_digest("x").0);
        assert_eq!(a.token_digest("x").0, a.token_digest("x").0);
        assert_ne!(a.token_digest("x").0, a.secret_digest("x").0);
        assert_ne!(a.token_digest("x").0, a.code_digest("x").0);
        assert_ne!(a.secret_digest("x").0, a.admin_digest("x").0);
        let d = a.token_digest("x");
        assert_eq!(a.opaque_id("family", &d), a.opaque_id("family", &d));
        assert_ne!(a.opaque_id("family", &d), a.opaque_id("token", &d));
        assert_ne!(a.opaque_id("family", &d), b.opaque_id("family", &d));
        assert_eq!(a.opaque_id("family", &d).len(), 22);
    }

    #[test]
    fn secret_digest_comparison() {
        let k = key(3);
        assert!(k.secret_digest("s3cret").matches(&k.secret_digest("s3cret")));
        assert!(!k.secret_digest("s3cret").matches(&k.secret_digest("s3creT")));
    }

    #[test]
    fn minted_tokens_are_unique_and_prefixed() {
        let a = mint_token(TokenKind::Access);
        let b = mint_token(TokenKind::Access);
        assert_ne!(a, b);
        assert!(a.starts_with("tsa_"));
        assert_eq!(a.len(), 4 + 43);
    }

    #[test]
    fn shards_spread_tokens() {
        let k = key(4);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[k.token_digest(&mint_token(TokenKind::Access)).shard(4)] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn debug_never_prints_secrets() {
        let k = key(5);
        assert_eq!(format!("{k:?}"), "ServerKey(..)");
        assert_eq!(format!("{:?}", k.secret_digest("a")), "SecretDigest(..)");
    }
}
