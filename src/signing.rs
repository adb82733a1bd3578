//! The OpenID Connect ID-token signing keys: generation, storage, rotation, the JWKS document,
//! and JWS compact signing and verification (RS256 and ES256).
//!
//! Guarantees:
//! - private keys exist only in memory and in `<data_dir>/keys/<kid>.json`, each file mode 0600 in
//!   a 0700 directory, and a key's file is written (atomically, synced) before the key signs
//!   anything, so a restart never loses a key that some issued token depends on;
//! - exactly one key is active (signs); rotation retires the previous one instead of dropping it,
//!   and a retired key stays in the JWKS, and verifies, for `publish_for` seconds after its
//!   retirement (callers set that to at least the longest ID-token lifetime), so every token
//!   signed with it has expired before relying parties can no longer fetch its public key; the
//!   first rotation after that deletes its file;
//! - `Debug` of anything here prints key ids, never key material;
//! - verification trusts only the keys held here and the algorithm each key was made for: the
//!   header's `alg` must equal the key's, so `none`, HMAC-with-the-public-key and other algorithm
//!   confusions are refused before any signature check.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::rngs::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::signature::{Keypair, RandomizedSigner, SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::datadir::DataDirError;

/// Modulus size of generated RSA keys, and the smallest accepted from a key file.
const RSA_BITS: usize = 2048;

/// Bytes of randomness in a key id: unique without coordination, short in every JWS header.
const KID_ENTROPY: usize = 12;

/// A JWS algorithm Tessera can sign ID tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the one every OpenID Connect relying party must accept.
    RS256,
    /// ECDSA on P-256 with SHA-256: shorter keys and signatures, much faster key generation.
    ES256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JOSE `alg` name that is not an [`Algorithm`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm {0:?} (expected RS256 or ES256)")]
pub struct UnknownAlgorithm(pub String);

impl std::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// JOSE names are case-sensitive (RFC 7515 §4.1.1), so only the exact spellings are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid signing key file: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("generating a {alg} signing key: {reason}")]
    Generate { alg: Algorithm, reason: String },
    /// Any other failure of the shared data-directory helpers; they report only I/O today.
    #[error(transparent)]
    DataDir(DataDirError),
}

impl From<DataDirError> for KeyStoreError {
    /// I/O failures from the shared file helpers become [`KeyStoreError::Io`], so callers match
    /// one variant for every I/O failure, whichever helper hit it.
    fn from(e: DataDirError) -> Self {
        match e {
            DataDirError::Io { path, source } => KeyStoreError::Io { path, source },
            other => KeyStoreError::DataDir(other),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Contents of `keys/<kid>.json`.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: Algorithm,
    /// Unix seconds.
    created: u64,
    /// Unix seconds at which the key stopped signing; `None` for the active key.
    retired: Option<u64>,
    /// PKCS#8 DER, standard base64.
    private_key: String,
}

/// The private half of a key. No `Debug`: `rsa`'s own would print the private exponent.
enum Secret {
    /// Boxed: a handful of keys are held, and boxing keeps the EC variant from carrying RSA's size.
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    Ec(p256::ecdsa::SigningKey),
}

enum Public {
    Rsa(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Ec(p256::ecdsa::VerifyingKey),
}

struct Key {
    kid: String,
    alg: Algorithm,
    created: u64,
    retired: Option<u64>,
    secret: Secret,
    public: Public,
    /// Built once: the public key never changes, and `jwks()` is served on every discovery fetch.
    jwk: serde_json::Value,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl Key {
    fn generate(alg: Algorithm, now: u64) -> Result<Self, KeyStoreError> {
        let secret = match alg {
            Algorithm::RS256 => {
                let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| KeyStoreError::Generate {
                    alg,
                    reason: e.to_string(),
                })?;
                Secret::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
            Algorithm::ES256 => Secret::Ec(p256::ecdsa::SigningKey::random(&mut OsRng)),
        };
        Ok(Self::new(
            crate::crypto::random_string("", KID_ENTROPY),
            alg,
            now,
            None,
            secret,
        ))
    }

    fn new(kid: String, alg: Algorithm, created: u64, retired: Option<u64>, secret: Secret) -> Self {
        let public = match &secret {
            Secret::Rsa(k) => Public::Rsa(k.verifying_key()),
            Secret::Ec(k) => Public::Ec(*k.verifying_key()),
        };
        let jwk = jwk(&kid, &public);
        Self {
            kid,
            alg,
            created,
            retired,
            secret,
            public,
            jwk,
        }
    }

    fn path(dir: &Path, kid: &str) -> PathBuf {
        dir.join(format!("{kid}.json"))
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Self, KeyStoreError> {
        let bad = |reason: String| KeyStoreError::Decode {
            path: path.to_owned(),
            reason,
        };
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        // The file name is how rotation finds a key to rewrite or delete, so it must name this key.
        if path.file_stem().and_then(|s| s.to_str()) != Some(file.kid.as_str()) {
            return Err(bad(format!("kid {:?} does not match the file name", file.kid)));
        }
        let der = STANDARD
            .decode(&file.private_key)
            .map_err(|e| bad(format!("private_key is not base64: {e}")))?;
        let secret = match file.alg {
            Algorithm::RS256 => {
                let key =
                    rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| bad(format!("not an RSA PKCS#8 key: {e}")))?;
                if key.size() * 8 < RSA_BITS {
                    return Err(bad(format!("RSA key of {} bits, below {RSA_BITS}", key.size() * 8)));
                }
                Secret::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
            Algorithm::ES256 => Secret::Ec(
                p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| bad(format!("not a P-256 PKCS#8 key: {e}")))?,
            ),
        };
        Ok(Self::new(file.kid, file.alg, file.created, file.retired, secret))
    }

    /// Writes the key's file; until this returns, the key must not sign.
    fn write(&self, dir: &Path) -> Result<(), KeyStoreError> {
        let der = match &self.secret {
            Secret::Rsa(k) => k.to_pkcs8_der(),
            Secret::Ec(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| KeyStoreError::Generate {
            alg: self.alg,
            reason: format!("PKCS#8 encoding: {e}"),
        })?;
        let file = KeyFile {
            kid: self.kid.clone(),
            alg: self.alg,
            created: self.created,
            retired: self.retired,
            private_key: STANDARD.encode(der.as_bytes()),
        };
        let json = serde_json::to_vec_pretty(&file).expect("serialising a plain struct");
        crate::datadir::write_private(&Self::path(dir, &self.kid), &json)?;
        Ok(())
    }

    /// Whether relying parties may still need this key: active, or retired less than
    /// `publish_for` seconds ago.
    fn published(&self, now: u64, publish_for: u64) -> bool {
        match self.retired {
            None => true,
            Some(r) => r.saturating_add(publish_for) > now,
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match &self.secret {
            // Blinded (randomised) RSA: the unblinded operation's timing depends on the private
            // key, and relying parties can have us sign chosen input (nonce, client_id).
            Secret::Rsa(k) => k.sign_with_rng(&mut OsRng, input).to_vec(),
            // RFC 6979 deterministic nonces; JWS wants the fixed 64-byte r‖s form, not DER.
            Secret::Ec(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
        }
    }

    fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match &self.public {
            Public::Rsa(k) => rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|s| k.verify(input, &s).is_ok()),
            // from_slice takes exactly 64 bytes, so a DER-encoded signature is refused.
            Public::Ec(k) => p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| k.verify(input, &s).is_ok()),
        }
    }
}

/// The RFC 7517 JWK of a public key; RFC 7518 §6 fixes the field encodings.
fn jwk(kid: &str, public: &Public) -> serde_json::Value {
    match public {
        Public::Rsa(k) => {
            let k: &rsa::RsaPublicKey = k.as_ref();
            // BigUint's big-endian bytes have no leading zeros, as §6.3.1 requires.
            serde_json::json!({
                "kty": "RSA",
                "use": "sig",
                "alg": Algorithm::RS256.as_str(),
                "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(k.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()),
            })
        }
        Public::Ec(k) => {
            // Uncompressed points carry both coordinates at the full 32 bytes §6.2.1.2 requires.
            let point = k.to_encoded_point(false);
            let (x, y) = (
                point.x().expect("uncompressed point"),
                point.y().expect("uncompressed point"),
            );
            serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "use": "sig",
                "alg": Algorithm::ES256.as_str(),
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            })
        }
    }
}

/// A signing key made and not yet in use (nor written): see [`SigningKeys::rotate_to`]. `Debug`
/// shows its kid, never the key.
#[derive(Debug)]
pub struct NewKey(Key);

impl NewKey {
    pub fn generate(alg: Algorithm, now: u64) -> Result<Self, KeyStoreError> {
        Key::generate(alg, now).map(NewKey)
    }
}

/// The signing keys of one data directory: `<data_dir>/keys/<kid>.json`, each file mode 0600
/// holding {kid, alg, created (unix secs), retired: Option<unix secs>, private key as base64 PKCS#8 DER}.
pub struct SigningKeys {
    dir: PathBuf,
    active: Key,
    /// Newest retirement first.
    retired: Vec<Key>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("dir", &self.dir)
            .field("active", &self.active.kid)
            .field("retired", &self.retired.iter().map(|k| &k.kid).collect::<Vec<_>>())
            .finish()
    }
}

impl SigningKeys {
    /// Loads every key file; if there is no active (non-retired) key, creates one of `alg`.
    ///
    /// An active key of another algorithm is kept: changing the configured algorithm takes
    /// effect at the next [`rotate`](Self::rotate), so tokens already issued keep verifying.
    /// Several active keys (a rotation interrupted between writing the new key and retiring the
    /// old) are resolved by keeping the newest and retiring the others at `now`.
    pub fn load_or_create(data_dir: &Path, alg: Algorithm, now: u64) -> Result<Self, KeyStoreError> {
        let dir = data_dir.join("keys");
        crate::datadir::ensure_dir(&dir)?;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            // Skips write_private's `<kid>.tmp`, left behind only by a write that never finished.
            if path.extension() != Some(std::ffi::OsStr::new("json")) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let key = Key::decode(&path, &bytes)?;
            // A file another tool made readable would leak the key; say so rather than refuse
            // to start, since the leak, if any, has already happened.
            let mode = std::fs::metadata(&path).map_err(io(&path))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "signing key file is readable by others");
            }
            keys.push(key);
        }

        let (mut active, mut retired): (Vec<Key>, Vec<Key>) = keys.into_iter().partition(|k| k.retired.is_none());
        active.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
        let newest = match active.pop() {
            Some(k) => k,
            None => {
                let key = Key::generate(alg, now)?;
                key.write(&dir)?;
                tracing::info!(kid = %key.kid, alg = %alg, "generated a new ID-token signing key");
                key
            }
        };
        for mut stale in active {
            stale.retired = Some(now);
            stale.write(&dir)?;
            tracing::warn!(kid = %stale.kid, "retired a second active signing key left by an interrupted rotation");
            retired.push(stale);
        }
        if newest.alg != alg {
            tracing::info!(kid = %newest.kid, active = %newest.alg, configured = %alg, "the configured signing algorithm takes effect at the next key rotation");
        }
        retired.sort_by(|a, b| b.retired.cmp(&a.retired).then_with(|| a.kid.cmp(&b.kid)));
        Ok(Self {
            dir,
            active: newest,
            retired,
        })
    }

    /// Adds a new active key of `alg` (written to disk first), marks the previous active key retired at `now`
    /// (its file rewritten), deletes key files retired before `now - publish_for` (no token signed with them
    /// can still be valid), and returns the new kid.
    ///
    /// A key is deleted exactly when [`jwks`](Self::jwks) stops publishing it (retired at or before
    /// `now - publish_for`). An error after the new key's
    /// file is written still leaves the new key active: a previous key whose file could not be
    /// rewritten is retired by the next load (it sees two active keys and keeps the newer), and a
    /// file that could not be deleted is tried again at the next rotation.
    pub fn rotate(&mut self, alg: Algorithm, now: u64, publish_for: u64) -> Result<String, KeyStoreError> {
        self.rotate_to(NewKey::generate(alg, now)?, now, publish_for)
    }

    /// [`rotate`](Self::rotate) to a key made beforehand with [`NewKey::generate`], so that a
    /// caller holding these keys behind a lock makes the key (tenths of a second for RSA)
    /// before it takes the lock, and holds it only to write the files and swap.
    pub fn rotate_to(&mut self, fresh: NewKey, now: u64, publish_for: u64) -> Result<String, KeyStoreError> {
        let NewKey(fresh) = fresh;
        let alg = fresh.alg;
        fresh.write(&self.dir)?;
        let mut previous = std::mem::replace(&mut self.active, fresh);
        previous.retired = Some(now);
        let kid = self.active.kid.clone();
        tracing::info!(kid = %kid, alg = %alg, retired = %previous.kid, "rotated the ID-token signing key");
        let rewrite = previous.write(&self.dir);
        self.retired.insert(0, previous);
        rewrite?;

        let mut first_failure = None;
        let mut kept = Vec::with_capacity(self.retired.len());
        for key in std::mem::take(&mut self.retired) {
            if key.published(now, publish_for) {
                kept.push(key);
                continue;
            }
            let path = Key::path(&self.dir, &key.kid);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(kid = %key.kid, "deleted an expired ID-token signing key"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Kept in memory so the next rotation tries again.
                    kept.push(key);
                    first_failure.get_or_insert_with(|| io(&path)(e));
                }
            }
        }
        self.retired = kept;
        match first_failure {
            Some(e) => Err(e),
            None => Ok(kid),
        }
    }

    /// The active key's kid and alg.
    pub fn active(&self) -> (&str, Algorithm) {
        (&self.active.kid, self.active.alg)
    }

    /// RFC 7517 JWK Set of the active key and every retired key with retired + publish_for > now:
    /// RSA keys {kty:"RSA", use:"sig", alg:"RS256", kid, n, e} and EC keys {kty:"EC", crv:"P-256", use:"sig",
    /// alg:"ES256", kid, x, y}, base64url without padding, unsigned big-endian integers without leading zeros
    /// for n and e, 32-byte x and y.
    pub fn jwks(&self, now: u64, publish_for: u64) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self
            .keys()
            .filter(|k| k.published(now, publish_for))
            .map(|k| &k.jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// JWS compact serialisation of `claims` with the active key: header {"alg","kid","typ":"JWT"}.
    ///
    /// # Panics
    /// If `claims` cannot be serialised as JSON (a map with non-string keys, say): claims are
    /// built by this crate, so that is a bug, not an input error.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        self.sign_typed("JWT", claims)
    }

    /// As [`sign`](Self::sign), with `typ` in the header: `secevent+jwt` for a Security Event
    /// Token (RFC 8417 §2.3), `token-introspection+jwt` for RFC 9701.
    pub fn sign_typed<T: Serialize>(&self, typ: &str, claims: &T) -> String {
        let key = &self.active;
        let header = serde_json::json!({ "alg": key.alg.as_str(), "kid": key.kid, "typ": typ });
        let payload = serde_json::to_vec(claims).expect("claims serialise as JSON");
        let mut jws = String::new();
        URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        let signature = key.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        jws
    }

    /// Verifies a compact JWS signed by any key this set still holds (kid from the header must match a held key,
    /// alg must be that key's alg; "none" and mismatches are refused) and returns its payload as JSON.
    /// Does not check exp or any claim: callers (e.g. RP-initiated logout's id_token_hint) decide that.
    ///
    /// Also refused: a header with `crit` (RFC 7515 §4.1.11: no extension is understood here), and
    /// a payload that is not a JSON object (RFC 7519 §7.2: a JWT's claims are an object).
    pub fn verify(&self, jws: &str) -> Option<serde_json::Value> {
        let mut parts = jws.split('.');
        let (header_b64, payload_b64, signature_b64) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).ok()?).ok()?;
        if header.get("crit").is_some() {
            return None;
        }
        let alg = header.get("alg")?.as_str()?;
        let kid = header.get("kid")?.as_str()?;
        let key = self.keys().find(|k| k.kid == kid)?;
        if alg != key.alg.as_str() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).ok()?;
        // The signing input is the encoded text as received (RFC 7515 §5.2), not a re-encoding.
        let input_len = header_b64.len() + 1 + payload_b64.len();
        if !key.verify(&jws.as_bytes()[..input_len], &signature) {
            return None;
        }
        let payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
        payload.is_object().then_some(payload)
    }

    /// Every held algorithm, for discovery's id_token_signing_alg_values_supported (always include RS256).
    ///
    /// RS256 is always listed because OpenID Connect Discovery §3 requires it.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = std::iter::once(Algorithm::RS256)
            .chain(self.keys().map(|k| k.alg))
            .collect();
        algs.sort();
        algs.dedup();
        algs
    }

    /// The active key, then retired keys from the most recently retired.
    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.active).chain(&self.retired)
    }
}

/// OpenID Connect Core §3.1.3.6 at_hash / c_hash for `alg` (both use SHA-256): base64url of the left half of SHA-256(token).
pub fn left_half_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    fn key_files(data_dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("keys"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({ "iss": "https://issuer.example", "sub": "alice", "aud": "client-1", "exp": 2_000_000_000u64 })
    }

    fn parts(jws: &str) -> (String, String, String) {
        let v: Vec<&str> = jws.split('.').collect();
        assert_eq!(v.len(), 3, "{jws}");
        (v[0].to_owned(), v[1].to_owned(), v[2].to_owned())
    }

    /// A token over `header` with a genuine signature by the active key: a header edited after
    /// signing would fail on the signature alone, so this is how the header checks are exercised.
    fn signed_with_header(keys: &SigningKeys, header: serde_json::Value, payload_b64: &str) -> String {
        let input = format!("{}.{payload_b64}", b64(header.to_string()));
        format!("{input}.{}", b64(keys.active.sign(input.as_bytes())))
    }

    /// Checks the refusals every key type must make, given a token `keys` signed.
    fn assert_refusals(keys: &SigningKeys, jws: &str) {
        let (kid, alg) = keys.active();
        let (h, p, s) = parts(jws);

        // One payload byte changed, still valid JSON, so only the signature can reject it.
        let mut payload = unb64(&p);
        let at = payload.windows(5).position(|w| w == b"alice").unwrap();
        payload[at] ^= 0x01;
        let tampered = format!("{h}.{}.{s}", b64(&payload));
        assert!(keys.verify(&tampered).is_none(), "flipped payload byte");

        // The helper's tokens do verify when the header is honest, so each refusal below is the
        // header check's doing.
        let honest = signed_with_header(keys, serde_json::json!({ "alg": alg.as_str(), "kid": kid }), &p);
        assert_eq!(keys.verify(&honest), Some(claims()));

        let none = serde_json::json!({ "alg": "none", "kid": kid, "typ": "JWT" });
        assert!(
            keys.verify(&format!("{}.{p}.", b64(none.to_string()))).is_none(),
            "alg none, empty signature"
        );
        assert!(
            keys.verify(&signed_with_header(keys, none, &p)).is_none(),
            "alg none, signed"
        );

        let other = match alg {
            Algorithm::RS256 => "ES256",
            Algorithm::ES256 => "RS256",
        };
        for wrong in [other, "HS256", "PS256"] {
            let header = serde_json::json!({ "alg": wrong, "kid": kid, "typ": "JWT" });
            assert!(
                keys.verify(&signed_with_header(keys, header, &p)).is_none(),
                "alg {wrong} on a {alg} key"
            );
        }

        let unknown = serde_json::json!({ "alg": alg.as_str(), "kid": "not-a-kid", "typ": "JWT" });
        assert!(
            keys.verify(&signed_with_header(keys, unknown, &p)).is_none(),
            "unknown kid"
        );
        let no_kid = serde_json::json!({ "alg": alg.as_str(), "typ": "JWT" });
        assert!(keys.verify(&signed_with_header(keys, no_kid, &p)).is_none(), "no kid");

        let crit = serde_json::json!({ "alg": alg.as_str(), "kid": kid, "crit": ["exp"], "exp": 1 });
        assert!(
            keys.verify(&signed_with_header(keys, crit, &p)).is_none(),
            "crit header"
        );

        let array = signed_with_header(
            keys,
            serde_json::json!({ "alg": alg.as_str(), "kid": kid }),
            &b64("[1]"),
        );
        assert!(keys.verify(&array).is_none(), "payload not an object");

        assert!(keys.verify(&format!("{h}.{p}")).is_none(), "two parts");
        assert!(keys.verify(&format!("{jws}.{s}")).is_none(), "four parts");
        assert!(keys.verify(&format!("{h}.{p}.{s}==")).is_none(), "padded signature");
    }

    /// Verifies `jws` using nothing but the public JWK published for its kid, as a relying party would.
    fn verify_with_published_jwk(jwks: &serde_json::Value, jws: &str) -> bool {
        let (h, p, s) = parts(jws);
        let header: serde_json::Value = serde_json::from_slice(&unb64(&h)).unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("kid is published");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], header["alg"]);
        let input = format!("{h}.{p}");
        let signature = unb64(&s);
        match jwk["kty"].as_str().unwrap() {
            "RSA" => {
                let n = unb64(jwk["n"].as_str().unwrap());
                let e = unb64(jwk["e"].as_str().unwrap());
                assert_ne!(n[0], 0, "n has no leading zero byte");
                assert_eq!(n.len(), 256, "2048-bit modulus");
                assert_eq!(jwk["e"], "AQAB");
                let public =
                    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e)).unwrap();
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public);
                let sig = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
                verifier.verify(input.as_bytes(), &sig).is_ok()
            }
            "EC" => {
                assert_eq!(jwk["crv"], "P-256");
                let x = unb64(jwk["x"].as_str().unwrap());
                let y = unb64(jwk["y"].as_str().unwrap());
                assert_eq!((x.len(), y.len()), (32, 32));
                let point = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(&x),
                    p256::FieldBytes::from_slice(&y),
                    false,
                );
                let verifier = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
                assert_eq!(signature.len(), 64, "r‖s, not DER");
                let sig = p256::ecdsa::Signature::from_slice(&signature).unwrap();
                verifier.verify(input.as_bytes(), &sig).is_ok()
            }
            other => panic!("unexpected kty {other}"),
        }
    }

    #[test]
    fn load_or_create_writes_one_private_file_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKeys::load_or_create(dir.path(), Algorithm::RS256, 1_000).unwrap();
        let files = key_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let keys_dir_mode = std::fs::metadata(dir.path().join("keys")).unwrap().permissions().mode() & 0o777;
        assert_eq!(keys_dir_mode, 0o700);
        let (kid, alg) = first.active();
        assert_eq!(alg, Algorithm::RS256);
        assert_eq!(files[0], dir.path().join("keys").join(format!("{kid}.json")));

        // The configured algorithm differs on purpose: an existing active key is kept.
        let second = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 2_000).unwrap();
        assert_eq!(second.active(), first.active());
        assert_eq!(key_files(dir.path()).len(), 1);
        // Same private key, not merely the same kid.
        let jws = first.sign(&claims());
        assert_eq!(second.verify(&jws), Some(claims()));
        assert_eq!(second.jwks(2_000, 0), first.jwks(2_000, 0));

        // Kids only: rsa's own Debug would print the private exponent.
        assert_eq!(
            format!("{second:?}"),
            format!(
                r#"SigningKeys {{ dir: {:?}, active: "{kid}", retired: [] }}"#,
                dir.path().join("keys")
            )
        );
    }

    #[test]
    fn rs256_sign_verify_refusals_and_published_jwk() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_create(dir.path(), Algorithm::RS256, 1_000).unwrap();
        let jws = keys.sign(&claims());
        let header: serde_json::Value = serde_json::from_slice(&unb64(&parts(&jws).0)).unwrap();
        assert_eq!(
            header,
            serde_json::json!({ "alg": "RS256", "kid": keys.active().0, "typ": "JWT" })
        );
        assert_eq!(keys.verify(&jws), Some(claims()));
        assert_refusals(&keys, &jws);

        let jwks = keys.jwks(1_000, 600);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert!(verify_with_published_jwk(&jwks, &jws));
        let (h, p, _) = parts(&jws);
        let forged = format!("{h}.{p}.{}", b64([7u8; 256]));
        assert!(
            !verify_with_published_jwk(&jwks, &forged),
            "the independent check can fail"
        );
        assert_eq!(keys.algorithms(), vec![Algorithm::RS256]);
    }

    #[test]
    fn es256_sign_verify_refusals_and_published_jwk() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 1_000).unwrap();
        let jws = keys.sign(&claims());
        let header: serde_json::Value = serde_json::from_slice(&unb64(&parts(&jws).0)).unwrap();
        assert_eq!(
            header,
            serde_json::json!({ "alg": "ES256", "kid": keys.active().0, "typ": "JWT" })
        );
        assert_eq!(unb64(&parts(&jws).2).len(), 64);
        assert_eq!(keys.verify(&jws), Some(claims()));
        assert_refusals(&keys, &jws);

        // The same signature DER-encoded is what a non-JOSE ECDSA API would produce; JWS refuses it.
        let (h, p, s) = parts(&jws);
        let der = p256::ecdsa::Signature::from_slice(&unb64(&s)).unwrap().to_der();
        assert!(keys.verify(&format!("{h}.{p}.{}", b64(der.as_bytes()))).is_none());

        let jwks = keys.jwks(1_000, 600);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert!(verify_with_published_jwk(&jwks, &jws));
        let forged = format!("{h}.{p}.{}", b64([7u8; 64]));
        assert!(
            !verify_with_published_jwk(&jwks, &forged),
            "the independent check can fail"
        );
        assert_eq!(keys.algorithms(), vec![Algorithm::RS256, Algorithm::ES256]);
    }

    #[test]
    fn rotate_keeps_retired_keys_published_then_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let publish_for = 600;
        let mut keys = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 1_000).unwrap();
        let old = keys.active().0.to_owned();
        let old_token = keys.sign(&claims());

        let new = keys.rotate(Algorithm::ES256, 2_000, publish_for).unwrap();
        assert_ne!(new, old);
        assert_eq!(keys.active(), (new.as_str(), Algorithm::ES256));
        let new_token = keys.sign(&claims());
        assert_eq!(
            parts(&new_token).0,
            b64(format!(r#"{{"alg":"ES256","kid":"{new}","typ":"JWT"}}"#))
        );
        assert_eq!(
            keys.verify(&old_token),
            Some(claims()),
            "tokens signed before rotation verify"
        );
        assert_eq!(keys.verify(&new_token), Some(claims()));

        let kids = |now| -> Vec<String> {
            keys.jwks(now, publish_for)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(kids(2_000), vec![new.clone(), old.clone()]);
        assert_eq!(kids(2_599), vec![new.clone(), old.clone()]);
        assert_eq!(
            kids(2_600),
            vec![new.clone()],
            "unpublished once retired + publish_for is reached"
        );
        assert!(verify_with_published_jwk(&keys.jwks(2_599, publish_for), &old_token));

        // The retirement reached the disk: a restart publishes the same set.
        let reloaded = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 2_100).unwrap();
        assert_eq!(reloaded.active().0, new);
        assert_eq!(reloaded.jwks(2_599, publish_for), keys.jwks(2_599, publish_for));
        assert_eq!(reloaded.jwks(2_600, publish_for), keys.jwks(2_600, publish_for));
        drop(reloaded);

        // Still inside the window: a rotation keeps the old file.
        let newer = keys.rotate(Algorithm::ES256, 2_599, publish_for).unwrap();
        let old_file = dir.path().join("keys").join(format!("{old}.json"));
        assert!(old_file.exists());
        assert_eq!(key_files(dir.path()).len(), 3);

        let newest = keys.rotate(Algorithm::ES256, 2_600, publish_for).unwrap();
        assert!(!old_file.exists(), "deleted after the publish window");
        assert_eq!(key_files(dir.path()).len(), 3, "{new}, {newer}, {newest}");
        assert!(keys.verify(&old_token).is_none(), "its key is gone");
        assert_eq!(keys.verify(&new_token), Some(claims()));
        assert_eq!(keys.active().0, newest);
    }

    #[test]
    fn an_interrupted_rotation_leaves_one_active_key_after_load() {
        // Two non-retired files: what a crash between writing the new key and retiring the old leaves.
        let dir = tempfile::tempdir().unwrap();
        let older = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 100).unwrap();
        let other = tempfile::tempdir().unwrap();
        let newer = SigningKeys::load_or_create(other.path(), Algorithm::ES256, 200).unwrap();
        let newer_kid = newer.active().0;
        let name = format!("{newer_kid}.json");
        std::fs::copy(
            other.path().join("keys").join(&name),
            dir.path().join("keys").join(&name),
        )
        .unwrap();

        let keys = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 300).unwrap();
        assert_eq!(keys.active().0, newer_kid, "the newest stays active");
        let older_file = dir.path().join("keys").join(format!("{}.json", older.active().0));
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(older_file).unwrap()).unwrap();
        assert_eq!(
            file["retired"], 300,
            "the other is retired now, and published from now on"
        );
        assert_eq!(keys.jwks(899, 600)["keys"].as_array().unwrap().len(), 2);
        assert_eq!(keys.jwks(900, 600)["keys"].as_array().unwrap().len(), 1);
        assert_eq!(key_files(dir.path()).len(), 2);
    }

    #[test]
    fn bad_key_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 100).unwrap();
        let kid = keys.active().0.to_owned();
        let path = dir.path().join("keys").join(format!("{kid}.json"));
        let good = std::fs::read(&path).unwrap();

        // A leftover temp file from an unfinished write is ignored.
        std::fs::write(dir.path().join("keys").join("leftover.tmp"), b"partial").unwrap();
        assert_eq!(
            SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 100)
                .unwrap()
                .active()
                .0,
            kid
        );

        let mut file: serde_json::Value = serde_json::from_slice(&good).unwrap();
        file["alg"] = "RS256".into();
        let cases = [
            (b"{ not json".to_vec(), "not json"),
            (serde_json::to_vec(&file).unwrap(), "an EC key labelled RS256"),
        ];
        for (bytes, what) in cases {
            std::fs::write(&path, bytes).unwrap();
            match SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 100) {
                Err(KeyStoreError::Decode { path: p, .. }) => assert_eq!(p, path, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        std::fs::write(&path, &good).unwrap();
        std::fs::rename(&path, dir.path().join("keys").join("renamed.json")).unwrap();
        let err = SigningKeys::load_or_create(dir.path(), Algorithm::ES256, 100).unwrap_err();
        assert!(err.to_string().contains("does not match the file name"), "{err}");
    }

    #[test]
    fn algorithm_names() {
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(serde_json::to_value(alg).unwrap(), alg.as_str());
        }
        assert!("rs256".parse::<Algorithm>().is_err(), "JOSE names are case-sensitive");
        assert!("none".parse::<Algorithm>().is_err());
    }

    #[test]
    fn left_half_hash_matches_the_openid_connect_examples() {
        // OpenID Connect Core 1.0 Appendix A.3 (at_hash) and A.4 (c_hash).
        assert_eq!(
            left_half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            left_half_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"),
            "LDktKdoQak3Pk0cnXxCltA"
        );
        assert_eq!(left_half_hash("anything").len(), 22);
    }
}
