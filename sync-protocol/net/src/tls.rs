//! A rustls acceptor from PEM files (certificate chain, private key), for both programs'
//! TLS listeners; errors name the file and say what is wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used (the messages name the file).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate chain: {source}", path.display())]
    Certificates { path: PathBuf, source: pem::Error },
    #[error("{}: no certificate in the PEM file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a PEM private key: {source}", path.display())]
    Key { path: PathBuf, source: pem::Error },
    #[error("{}: no private key in the PEM file", path.display())]
    NoKey { path: PathBuf },
    #[error("{0}")]
    Protocols(rustls::Error),
    #[error("TLS certificate/key rejected: {0}")]
    Rejected(rustls::Error),
}

/// Loads an acceptor offering `alpn` (e.g. `h2`, `http/1.1`; empty: none).
pub fn acceptor(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Certificates {
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: key.to_path_buf(),
        },
        source => TlsError::Key {
            path: key.to_path_buf(),
            source,
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let d = std::env::temp_dir().join(format!("garasi-net-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let empty = d.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let e = acceptor(&empty, &empty, &[]).err().unwrap().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let missing = d.join("missing.pem");
        let e = acceptor(&missing, &missing, &[]).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
