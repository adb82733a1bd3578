//! Files that live beside the database in the data directory, each created with mode 0600:
//! - `server.key`: the HMAC key for token and secret digests, generated on first start unless
//!   supplied (`server_key_file` or the `TESSERA_SERVER_KEY` environment variable, base64);
//! - `admin.json`: the running server's public URL, where its admin API answers (the Unix socket
//!   `admin.sock` beside it, or `admin_bind`) and a per-start admin credential, which lets
//!   `tessera client ...` manage clients while the server holds sled's lock. Whoever can read
//!   this file can read the server key too, so it grants nothing new.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::crypto::{KeyError, ServerKey};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("server key from {origin}: {source}")]
    Key { origin: String, source: KeyError },
    #[error("TESSERA_SERVER_KEY is not valid base64")]
    KeyEncoding,
    #[error("{path} is not a valid admin file: {reason}")]
    Admin { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn ensure_dir(dir: &Path) -> Result<(), DataDirError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes `bytes` to `path` atomically (temp file, then rename) with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The server key: from the environment value if given, else from `key_file`, generating that
/// file on first start.
pub fn load_server_key(env_value: Option<&str>, key_file: &Path) -> Result<ServerKey, DataDirError> {
    if let Some(v) = env_value {
        let v = v.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v))
            .map_err(|_| DataDirError::KeyEncoding)?;
        return ServerKey::from_bytes(&bytes).map_err(|source| DataDirError::Key {
            origin: "TESSERA_SERVER_KEY".into(),
            source,
        });
    }
    match std::fs::read(key_file) {
        Ok(bytes) => ServerKey::from_bytes(&bytes).map_err(|source| DataDirError::Key {
            origin: key_file.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = ServerKey::generate();
            write_private(key_file, &fresh)?;
            tracing::info!(path = %key_file.display(), "generated a new server key");
            Ok(ServerKey::from_bytes(&fresh).expect("generated keys have the right length"))
        }
        Err(e) => Err(io(key_file)(e)),
    }
}

/// Contents of `admin.json`. `Debug` hides the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminFile {
    /// The public base URL (`http(s)://host:port`).
    pub url: String,
    /// Where the admin API answers: `unix:<absolute path of the socket>` or `http://host:port`.
    pub admin: String,
    pub token: String,
}

impl std::fmt::Debug for AdminFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminFile")
            .field("url", &self.url)
            .field("admin", &self.admin)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The `admin` value prefix of a Unix socket.
pub const UNIX_PREFIX: &str = "unix:";

/// Where an admin API answers, parsed from `AdminFile::admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// A Unix socket; requests go to it with any host in the URL.
    Unix(PathBuf),
    /// A TCP base URL, `http://host:port`.
    Tcp(String),
}

impl AdminFile {
    pub fn endpoint(&self) -> AdminEndpoint {
        match self.admin.strip_prefix(UNIX_PREFIX) {
            Some(path) => AdminEndpoint::Unix(PathBuf::from(path)),
            None => AdminEndpoint::Tcp(self.admin.trim_end_matches('/').to_owned()),
        }
    }
}

pub fn admin_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.json")
}

/// The admin API's Unix socket when no `admin_bind` is set.
pub fn admin_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

pub fn write_admin(data_dir: &Path, admin: &AdminFile) -> Result<(), DataDirError> {
    let json = serde_json::to_vec_pretty(admin).expect("serialising a plain struct");
    write_private(&admin_path(data_dir), &json)
}

pub fn read_admin(data_dir: &Path) -> Result<AdminFile, DataDirError> {
    let path = admin_path(data_dir);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| DataDirError::Admin {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_admin_file_hides_the_token() {
        let admin = AdminFile {
            url: "http://127.0.0.1:4000".into(),
            admin: "unix:/data/admin.sock".into(),
            token: "tsadm_s3cr3t".into(),
        };
        let shown = format!("{admin:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("127.0.0.1:4000"), "{shown}");
    }

    #[test]
    fn key_is_generated_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let a = load_server_key(None, &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_server_key(None, &path).unwrap();
        assert_eq!(
            a.token_digest("t").0,
            b.token_digest("t").0,
            "the second start reads the same key"
        );
    }

    #[test]
    fn key_from_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let encoded = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let k = load_server_key(Some(&encoded), &path).unwrap();
        assert_eq!(
            k.token_digest("t").0,
            ServerKey::from_bytes(&[9u8; 32]).unwrap().token_digest("t").0
        );
        assert!(!path.exists(), "a supplied key is not written to disk");
        assert!(load_server_key(Some("not base64 !"), &path).is_err());
        assert!(load_server_key(Some("c2hvcnQ="), &path).is_err());
    }

    #[test]
    fn admin_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        write_admin(
            dir.path(),
            &AdminFile {
                url: "http://127.0.0.1:1".into(),
                admin: "unix:/tmp/admin.sock".into(),
                token: "x".into(),
            },
        )
        .unwrap();
        let read = read_admin(dir.path()).unwrap();
        assert_eq!(read.url, "http://127.0.0.1:1");
        assert_eq!(read.endpoint(), AdminEndpoint::Unix("/tmp/admin.sock".into()));
        let tcp = AdminFile {
            admin: "http://127.0.0.1:9/".into(),
            ..read
        };
        assert_eq!(tcp.endpoint(), AdminEndpoint::Tcp("http://127.0.0.1:9".into()));
        let mode = std::fs::metadata(admin_path(dir.path())).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
