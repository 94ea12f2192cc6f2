//! The one serving loop of the edge and the cloud: an axum app on a bound listener, plain
//! HTTP or TLS, with the limits a server needs when strangers can reach it: a total
//! connection cap kept below the process's descriptor limit (descriptors in reserve for
//! the database, temporary files and logs), a per-client cap, a TLS handshake timeout,
//! a header-read timeout, an idle timeout and a bound on HTTP/2 streams. When a cap is
//! reached the oldest idle connection makes room (`registry`), so slow clients push
//! each other out, not a client being served. `conn` serves one connection.
//!
//! Each program counts what happens through [`ConnMetrics`] under its own metric names.
//! Every request carries [`ConnInfo`] (peer address, TLS or not), axum's
//! `ConnectInfo<SocketAddr>` and a [`ConnActivity`] in its extensions.

mod arriving;
mod conn;
mod registry;
pub mod tls;

pub use conn::{ConnActivity, ConnInfo, UnauthenticatedBody};
pub use registry::client_key;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

/// What the serving loop reports, for a program's own metrics (all no-ops by default).
pub trait ConnMetrics: Send + Sync {
    /// A connection was admitted.
    fn opened(&self) {}
    /// An admitted connection ended, for whatever reason.
    fn closed(&self) {}
    /// A connection was refused or closed by a limit: `connection_cap`,
    /// `client_connection_cap` (the oldest idle one closed to make room, or the new one
    /// refused), `header_timeout`, `idle_timeout`, `tls_handshake_timeout`.
    fn refused(&self, _reason: &'static str) {}
}

/// Connection limits (each program's `--max-connections`, `--fd-reserve`, ...).
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
    /// Concurrent HTTP/2 streams per connection (0: HTTP/1.1 only).
    pub h2_max_streams: u32,
    /// A request body from a connection nothing has authenticated yet must arrive
    /// within this (it does not make its connection busy meanwhile).
    pub body_timeout: Duration,
    /// Bytes of such bodies held at most, all connections together (then refused with
    /// "try again").
    pub body_budget_bytes: usize,
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
            body_timeout: Duration::from_secs(20),
            body_budget_bytes: 16 << 20,
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
        let open = open_files().unwrap_or(16);
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

/// Descriptors this process has open now, from /proc (None elsewhere).
pub fn open_files() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    cancel: CancellationToken,
    limits: ConnLimits,
    metrics: Option<Arc<dyn ConnMetrics>>,
) -> std::io::Result<()> {
    serve_all(vec![(listener, tls)], app, cancel, limits, metrics).await
}

/// Serves `app` on several listeners (e.g. plain HTTP and HTTPS) under one set of caps:
/// they share the process's descriptors, so they share one connection registry.
pub async fn serve_all(
    listeners: Vec<(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    app: Router,
    cancel: CancellationToken,
    limits: ConnLimits,
    metrics: Option<Arc<dyn ConnMetrics>>,
) -> std::io::Result<()> {
    let max = limits.effective_max();
    if max < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            effective = max,
            nofile = open_files_limit(),
            fd_reserve = limits.fd_reserve,
            "the descriptor limit allows fewer connections than the configured maximum: \
             raise `ulimit -n` (LimitNOFILE=) to serve more"
        );
    }
    let registry = registry::Registry::new(max, limits.max_per_client, metrics);
    let body_budget = arriving::BodyBudget::new(limits.body_budget_bytes);
    let mut loops = tokio::task::JoinSet::new();
    for (listener, tls) in listeners {
        let ctx = Arc::new(conn::Ctx {
            tls,
            app: app.clone(),
            cancel: cancel.clone(),
            limits,
            registry: registry.clone(),
            body_budget: body_budget.clone(),
        });
        loops.spawn(accept_loop(listener, ctx));
    }
    while let Some(r) = loops.join_next().await {
        if let Err(e) = r {
            // A panic in an accept loop (there is no unwrap in it): report, serve on.
            tracing::error!(error = %e, "an accept loop ended abnormally");
        }
    }
    Ok(())
}

/// Accepts connections until the server stops, admitting each under the caps.
async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<conn::Ctx>) {
    let mut accept_errors = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
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
        match ctx.registry.admit(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(conn::run(tcp, peer, slot, ctx.clone()));
            }
            // Closed at once: the client may retry (and a cap is temporary).
            Err(_) => drop(tcp),
        }
    }
}
