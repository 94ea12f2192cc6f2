//! HTTPS on the LAN: the self-signed certificate `garasi-edge init` makes (tablets pin or
//! check it by its SHA-256 fingerprint), and `Secure` on every cookie a response over
//! TLS sets, so a session begun over HTTPS never travels in clear afterwards. The
//! acceptor is the front doors' (`front::tls`), shared with MQTT over TLS.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::config::{CERT_FILE, KEY_FILE};

/// Why the certificate could not be made (messages say what to do).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0:?} is neither a host name nor an IP address: use letters, digits, '-' and '.'")]
    Name(String),
    #[error("cannot make the HTTPS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}. Check the data directory's permissions", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate written to the data directory.
pub struct MadeCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the DER certificate, as colon-separated upper-case hex (the form
    /// browsers and `openssl x509 -fingerprint -sha256` show).
    pub fingerprint: String,
    pub names: Vec<String>,
}

/// The SHA-256 fingerprint of a DER certificate, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes a self-signed certificate for `hosts` (names or IP addresses) plus localhost,
/// 127.0.0.1 and ::1, valid 10 years, and writes it and its key (both 0600) into `dir`.
pub fn make_self_signed(dir: &Path, hosts: &[String]) -> Result<MadeCert, CertError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for h in hosts {
        let h = h.trim().to_ascii_lowercase();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
        if !ok {
            return Err(CertError::Name(h.chars().take(80).collect()));
        }
        if !names.contains(&h) {
            names.push(h);
        }
    }
    let mut params = rcgen::CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "garasi-edge");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 86_400)).into();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    let made = MadeCert {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
        fingerprint: fingerprint(cert.der()),
        names,
    };
    write_private(&made.key, key.serialize_pem().as_bytes())?;
    write_private(&made.cert, cert.pem().as_bytes())?;
    Ok(made)
}

/// Writes a new file readable by its owner only (never replaces one: a depot's pinned
/// certificate must not change behind its tablets' backs).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Middleware: over TLS, every `Set-Cookie` gets `Secure` (the browser then never sends
/// the cookie over plain HTTP). Over plain HTTP cookies stay as they are, or the LAN
/// listener could not keep anyone signed in.
pub async fn secure_cookies(req: Request, next: Next) -> Response {
    let tls = req
        .extensions()
        .get::<garasi_net::ConnInfo>()
        .is_some_and(|c| c.tls);
    let mut resp = next.run(req).await;
    if tls {
        let headers = resp.headers_mut();
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        if !cookies.is_empty() {
            headers.remove(header::SET_COOKIE);
            for c in cookies {
                let secure = c
                    .to_str()
                    .ok()
                    .filter(|s| {
                        !s.split(';')
                            .any(|a| a.trim().eq_ignore_ascii_case("secure"))
                    })
                    .and_then(|s| HeaderValue::from_str(&format!("{s}; Secure")).ok());
                headers.append(header::SET_COOKIE, secure.unwrap_or(c));
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_files_are_private_and_the_fingerprint_is_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let made =
            make_self_signed(dir.path(), &["garasi.depot".into(), "10.0.0.5".into()]).unwrap();
        assert!(made.names.contains(&"garasi.depot".to_string()));
        let pem = std::fs::read(&made.cert).unwrap();
        use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
        let der = CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(fingerprint(&der), made.fingerprint);
        #[cfg(unix)]
        for p in [&made.cert, &made.key] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert!(crate::front::tls::tls_acceptor(&made.cert, &made.key).is_ok());
        // Never replaced: a second init keeps the pinned certificate.
        assert!(make_self_signed(dir.path(), &[]).is_err());
        assert!(make_self_signed(dir.path(), &["bad name".into()]).is_err());
    }
}
