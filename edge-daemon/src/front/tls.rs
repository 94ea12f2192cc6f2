//! TLS for the front doors: a rustls acceptor from PEM files (`garasi-net`'s loader; the
//! edge offers no ALPN, so HTTPS is HTTP/1.1).

use tokio_rustls::TlsAcceptor;

/// Loads a rustls acceptor from PEM files; the error names the file.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    garasi_net::tls::acceptor(cert, key, &[]).map_err(|e| e.to_string())
}
