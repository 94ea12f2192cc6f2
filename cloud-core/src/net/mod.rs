//! Serving the API on a bound listener, plain HTTP or TLS, with the limits of a server
//! that faces the internet: a total connection cap kept below the process's descriptor
//! limit (descriptors in reserve for the database, temporary files and logs), a
//! per-client cap, a TLS handshake timeout, a header-read timeout, an idle timeout and a
//! bound on HTTP/2 streams. When a cap is reached the oldest idle connection makes room
//! (`registry`), so slow clients push each other out, not a depot being served.
//! `conn` serves one connection.

mod conn;
mod registry;

pub use conn::{ConnActivity, UnauthenticatedBody};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::CloudMetrics;

/// Connection limits (the `serve` command's `--max-connections`, `--fd-reserve`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most (lowered to the descriptor limit less `fd_reserve`).
    pub max_connections: usize,
    /// Open connections per client address at most (0: no per-client cap, e.g. behind a
    /// proxy that hides client addresses).
    pub max_per_client: usize,
    /// Descriptors never used for connections.
    pub fd_reserve: usize,
    pub tls_handshake_timeout: Duration,
    /// Until a request's headers are complete (and, for HTTP/1.1, between kept-alive
    /// requests).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte moving is closed after this.
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            max_per_client: 64,
            fd_reserve: 64,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_max_streams: 16,
        }
    }
}

impl ConnLimits {
    /// The connection cap this process can keep: `max_connections`, or fewer when the
    /// descriptor limit (less the reserve and what is open already) is lower.
    pub fn effective_max(&self) -> usize {
        let Some(nofile) = open_files_limit() else {
            return self.max_connections;
        };
        let open = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count());
        let room = nofile.saturating_sub(self.fd_reserve + open);
        self.max_connections.min(room).max(1)
    }
}

/// The soft limit on open files (`ulimit -n`), from /proc (None elsewhere).
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    cancel: CancellationToken,
    limits: ConnLimits,
    metrics: Option<Arc<CloudMetrics>>,
) -> std::io::Result<()> {
    let max = limits.effective_max();
    if max < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            effective = max,
            nofile = open_files_limit(),
            fd_reserve = limits.fd_reserve,
            "the descriptor limit allows fewer connections than --max-connections: raise \
             `ulimit -n` (LimitNOFILE=) to serve more"
        );
    }
    let registry = registry::Registry::new(max, limits.max_per_client, metrics);
    let ctx = Arc::new(conn::Ctx {
        tls,
        app,
        cancel: cancel.clone(),
        limits,
        registry: registry.clone(),
    });
    let mut accept_errors = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = accept_errors, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        match registry.admit(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(conn::run(tcp, peer, slot, ctx.clone()));
            }
            // Closed at once: the client may retry (and a cap is temporary).
            Err(_) => drop(tcp),
        }
    }
}
