//! The HTTP server's settings: `[http]` in the TOML file and the `--http-*` /
//! `--https-*` flags (`HttpFlags`, flattened into `config::Settings`): connection caps
//! and timeouts (sized for a LAN box with a 1,024-descriptor limit), live-stream caps,
//! and the optional HTTPS listener. Checked with every other setting (exit 64).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::Collect;

/// The self-signed certificate `garasi-edge init` makes, in the data directory.
pub const CERT_FILE: &str = "https-cert.pem";
/// Its private key (0600).
pub const KEY_FILE: &str = "https-key.pem";

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub limits: garasi_net::ConnLimits,
    /// Live streams (server-sent events) open at once, and per client address.
    pub max_streams: usize,
    pub max_streams_per_client: usize,
    pub https: Option<HttpsConfig>,
}

#[derive(Debug, Clone)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The edge's defaults: a depot box on a LAN, often run with `ulimit -n` 1,024.
pub fn default_limits() -> garasi_net::ConnLimits {
    garasi_net::ConnLimits {
        max_connections: 1024,
        max_per_client: 64,
        fd_reserve: 64,
        tls_handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        // HTTP/1.1 only: tablets and boards need nothing more, and HTTP/2 on the plain
        // port (h2c) let one connection hold 16 half-sent bodies.
        h2_max_streams: 0,
        body_timeout: Duration::from_secs(20),
        body_budget_bytes: 16 << 20,
    }
}

const MAX_STREAMS: usize = 256;
const MAX_STREAMS_PER_CLIENT: usize = 8;

/// The HTTP server's flags and environment variables; `None` means "not given".
#[derive(Debug, Default, Clone, clap::Args)]
pub struct HttpFlags {
    /// HTTP connections open at most, both listeners together; lowered to what
    /// `ulimit -n` leaves [default: 1024].
    #[arg(long, env = "GARASI_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<String>,
    /// HTTP connections per client address at most (0: no cap) [default: 64].
    #[arg(long, env = "GARASI_HTTP_MAX_CONNECTIONS_PER_CLIENT")]
    pub http_max_connections_per_client: Option<String>,
    /// Descriptors never used for HTTP connections (database, logs) [default: 64].
    #[arg(long, env = "GARASI_HTTP_FD_RESERVE")]
    pub http_fd_reserve: Option<String>,
    /// Seconds a client has to send a request's headers [default: 10].
    #[arg(long, env = "GARASI_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<String>,
    /// Seconds an idle connection is kept open [default: 60].
    #[arg(long, env = "GARASI_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<String>,
    /// Seconds a request body from someone not signed in has to arrive [default: 20].
    #[arg(long, env = "GARASI_HTTP_BODY_TIMEOUT_SECS")]
    pub http_body_timeout_secs: Option<String>,
    /// Live streams (board, telemetry events) open at once; at most half the
    /// connection cap [default: 256].
    #[arg(long, env = "GARASI_HTTP_MAX_STREAMS")]
    pub http_max_streams: Option<String>,
    /// Live streams per client address [default: 8].
    #[arg(long, env = "GARASI_HTTP_MAX_STREAMS_PER_CLIENT")]
    pub http_max_streams_per_client: Option<String>,
    /// HTTPS listener for the same API and pages, e.g. 0.0.0.0:8443 (off by default).
    #[arg(long, env = "GARASI_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// PEM certificate chain for HTTPS [default: --tls-cert, else DIR/https-cert.pem].
    #[arg(long, env = "GARASI_HTTPS_CERT")]
    pub https_cert: Option<PathBuf>,
    /// PEM private key for HTTPS [default: --tls-key, else DIR/https-key.pem].
    #[arg(long, env = "GARASI_HTTPS_KEY")]
    pub https_key: Option<PathBuf>,
}

/// `[http]` in the file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    fd_reserve: Option<usize>,
    header_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    tls_handshake_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_streams: Option<usize>,
    max_streams_per_client: Option<usize>,
    https_listen: Option<String>,
    https_cert: Option<PathBuf>,
    https_key: Option<PathBuf>,
}

/// Where HTTPS takes its certificate from: MQTT's TLS files when given.
pub(crate) struct MqttTlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Resolves the section: flags over the file over defaults.
pub(crate) fn resolve(
    c: &mut Collect,
    s: &HttpFlags,
    f: &FileHttp,
    data_dir: &Path,
    mqtt: MqttTlsFiles,
) -> HttpConfig {
    let d = default_limits();
    let secs = |c: &mut Collect, what: &str, cli: &Option<String>, file, default: Duration| {
        let v: u64 = c.pick(what, cli, file, default.as_secs());
        if v == 0 {
            c.0.push(format!(
                "{what} 0 closes every connection at once: use at least 1"
            ));
        }
        Duration::from_secs(v)
    };
    let limits = garasi_net::ConnLimits {
        max_connections: c.pick(
            "--http-max-connections",
            &s.http_max_connections,
            f.max_connections,
            d.max_connections,
        ),
        max_per_client: c.pick(
            "--http-max-connections-per-client",
            &s.http_max_connections_per_client,
            f.max_connections_per_client,
            d.max_per_client,
        ),
        fd_reserve: c.pick(
            "--http-fd-reserve",
            &s.http_fd_reserve,
            f.fd_reserve,
            d.fd_reserve,
        ),
        tls_handshake_timeout: secs(
            c,
            "[http] tls_handshake_timeout_secs",
            &None,
            f.tls_handshake_timeout_secs,
            d.tls_handshake_timeout,
        ),
        header_read_timeout: secs(
            c,
            "--http-header-timeout-secs",
            &s.http_header_timeout_secs,
            f.header_timeout_secs,
            d.header_read_timeout,
        ),
        idle_timeout: secs(
            c,
            "--http-idle-timeout-secs",
            &s.http_idle_timeout_secs,
            f.idle_timeout_secs,
            d.idle_timeout,
        ),
        h2_max_streams: d.h2_max_streams,
        body_timeout: secs(
            c,
            "--http-body-timeout-secs",
            &s.http_body_timeout_secs,
            f.body_timeout_secs,
            d.body_timeout,
        ),
        body_budget_bytes: d.body_budget_bytes,
    };
    if limits.max_connections < 16 {
        c.0.push(format!(
            "--http-max-connections {} leaves no room for the board and tablets: use at least 16",
            limits.max_connections
        ));
    }
    let max_streams = c.pick(
        "--http-max-streams",
        &s.http_max_streams,
        f.max_streams,
        MAX_STREAMS,
    );
    let max_streams_per_client = c.pick(
        "--http-max-streams-per-client",
        &s.http_max_streams_per_client,
        f.max_streams_per_client,
        MAX_STREAMS_PER_CLIENT,
    );
    if max_streams >= limits.max_connections {
        c.0.push(format!(
            "--http-max-streams {max_streams} must stay below --http-max-connections {} \
             (a stream holds its connection): lower it",
            limits.max_connections
        ));
    }
    let https = s
        .https_listen
        .clone()
        .or(f.https_listen.clone())
        .and_then(|raw| https(c, s, f, data_dir, mqtt, raw));
    HttpConfig {
        limits,
        max_streams,
        max_streams_per_client,
        https,
    }
}

/// The HTTPS listener: its address and a certificate and key that exist (given, else
/// MQTT's TLS files, else the pair `init` made in the data directory).
fn https(
    c: &mut Collect,
    s: &HttpFlags,
    f: &FileHttp,
    data_dir: &Path,
    mqtt: MqttTlsFiles,
    raw: String,
) -> Option<HttpsConfig> {
    let listen = c.addr("--https-listen", &Some(raw), &None, "");
    let given = (
        s.https_cert.clone().or(f.https_cert.clone()),
        s.https_key.clone().or(f.https_key.clone()),
    );
    let (cert, key) = match given {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => match (mqtt.cert, mqtt.key) {
            (Some(cert), Some(key)) => (cert, key),
            _ => (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE)),
        },
        _ => {
            c.0.push("--https-cert and --https-key go together: give both, or neither".into());
            return None;
        }
    };
    let mut ok = true;
    for (name, p) in [("--https-cert", &cert), ("--https-key", &key)] {
        if !p.is_file() {
            ok = false;
            c.0.push(format!(
                "{name} {}: file not found: run `garasi-edge init` to make a self-signed \
                 certificate in the data directory, or give --https-cert and --https-key",
                p.display()
            ));
        }
    }
    match listen {
        Some(listen) if ok => Some(HttpsConfig { listen, cert, key }),
        _ => None,
    }
}
