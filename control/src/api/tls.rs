//! TLS for `api.listen` when `api.tls_certificate` and `api.tls_key` are set (rustls with the
//! ring provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN). The key file is a secret: refused when
//! its group or others may read it, like the tokens.

use super::auth::{read_private, SecretError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or the key is exposed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The certificate file could not be read.
    #[error("api.tls_certificate {file}: cannot read: {source}")]
    ReadCertificate {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No PEM certificate in the file.
    #[error("api.tls_certificate {file}: no PEM certificate in it ({reason})")]
    NoCertificate {
        /// The file.
        file: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// No PEM private key in the file.
    #[error("api.tls_key {file}: no PEM private key in it ({reason})")]
    NoKey {
        /// The file.
        file: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// rustls refused the pair (the key does not match, an unsupported key type).
    #[error("api.tls_certificate {cert} with api.tls_key {key}: {reason}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's words.
        reason: String,
    },
}

/// The server configuration of `cert` (PEM chain, leaf first) and `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem = std::fs::read(cert).map_err(|source| TlsError::ReadCertificate {
        file: cert.to_owned(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            file: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: cert.to_owned(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    let key_pem = read_private("api.tls_key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        file: key.to_owned(),
        reason: e.to_string(),
    })?;
    let refused = |e: rustls::Error| TlsError::Refused {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(refused)?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
