//! Serving the API over TLS: a rustls acceptor from PEM files (h2 and http/1.1 by ALPN);
//! the accept loop and its connection limits are `net`'s.

use std::path::Path;

use axum::Router;

pub use garasi_net::tls::TlsError;

/// Loads a rustls acceptor from PEM files (certificate chain, private key), offering
/// HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    garasi_net::tls::acceptor(cert, key, &[b"h2", b"http/1.1"])
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
