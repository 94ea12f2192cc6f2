//! Serving the API over TLS: a rustls acceptor from PEM files (h2 and http/1.1 by ALPN);
//! the accept loop and its connection limits are `net`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;

/// Why the certificate or key cannot be used (the messages name the file).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate chain: {source}", path.display())]
    Certificates {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no private key in the PEM file", path.display())]
    NoKey { path: PathBuf },
    #[error("{0}")]
    Protocols(tokio_rustls::rustls::Error),
    #[error("TLS certificate/key rejected: {0}")]
    Rejected(tokio_rustls::rustls::Error),
}

/// Loads a rustls acceptor from PEM files (certificate chain, private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Certificates {
            path: cert.to_path_buf(),
            source,
        })?;
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|source| TlsError::Key {
            path: key.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: key.to_path_buf(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on an already-bound listener until `cancel` fires, with the
/// default connection limits ([`crate::net::ConnLimits`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    crate::net::serve(
        listener,
        Some(acceptor),
        app,
        cancel,
        crate::net::ConnLimits::default(),
        None,
    )
    .await
}
