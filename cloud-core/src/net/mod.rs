//! The cloud's serving loop is `garasi-net`'s (shared with the edge): connection caps
//! below the descriptor limit, per-client caps, TLS handshake / header-read / idle
//! timeouts, the HTTP/2 stream bound. This module keeps the cloud's names for it and
//! reports what it counts under the cloud's metric names (`garasi_cloud_connections`,
//! `garasi_cloud_refusals_total{reason}`).

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

pub use garasi_net::{open_files_limit, ConnActivity, ConnLimits, UnauthenticatedBody};

use crate::metrics::CloudMetrics;

impl garasi_net::ConnMetrics for CloudMetrics {
    fn opened(&self) {
        self.connections.inc();
    }
    fn closed(&self) {
        self.connections.dec();
    }
    fn refused(&self, reason: &'static str) {
        CloudMetrics::refused(self, reason);
    }
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
    let metrics = metrics.map(|m| m as Arc<dyn garasi_net::ConnMetrics>);
    garasi_net::serve(listener, tls, app, cancel, limits, metrics).await
}
