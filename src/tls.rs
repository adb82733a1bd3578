//! https for the public listener: the rustls server configuration from the PEM files named by
//! `tls_cert` (the certificate chain, leaf first) and `tls_key` (a PKCS#8, PKCS#1 or SEC1 private
//! key). A missing, unreadable or invalid file, or a key that does not match the certificate, is
//! an error at start, never a listener that fails its handshakes later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("tls_key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("tls_cert and tls_key do not make a usable server configuration: {0}")]
    Config(String),
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason| TlsError::Cert {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// The rustls configuration for the files, with aws-lc-rs as the crypto provider and the
/// protocol versions rustls deems safe (TLS 1.2 and 1.3). ALPN is set by actix-web.
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = certificates(&files.cert)?;
    // `Debug` of a private key is redacted by rustls, and the key is never logged here.
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: pem_reason(e),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let e = server_config(&missing).unwrap_err();
        assert!(matches!(e, TlsError::Cert { .. }), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let not_pem = files(dir.path(), "hello", "hello");
        assert!(matches!(server_config(&not_pem).unwrap_err(), TlsError::Cert { .. }));

        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = generated.cert.pem();
        let no_key = files(dir.path(), &cert, &cert);
        let e = server_config(&no_key).unwrap_err();
        assert!(matches!(e, TlsError::Key { .. }), "{e}");

        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let mismatched = files(dir.path(), &cert, &other.signing_key.serialize_pem());
        assert!(matches!(server_config(&mismatched).unwrap_err(), TlsError::Config(_)));

        let good = files(dir.path(), &cert, &generated.signing_key.serialize_pem());
        assert!(server_config(&good).is_ok());
    }
}
