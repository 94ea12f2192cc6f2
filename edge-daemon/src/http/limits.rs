//! The edge's side of the connection limits: its metrics for `garasi-net`'s serving
//! loop (`garasi_http_connections`, `garasi_http_refusals_total{reason}`), and the cap
//! on live streams (server-sent events). A stream holds its connection busy for as long
//! as a board is open, so busy connections are never closed to make room: without a cap,
//! streams alone could fill every connection the node can keep. Applied to every
//! response that is an event stream, whichever module serves it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, Opts};

use super::{ApiError, ClientIp};

/// The serving loop's counts, in the node's registry.
pub struct HttpMetrics {
    connections: IntGauge,
    refusals: IntCounterVec,
}

impl HttpMetrics {
    pub fn register(r: &prometheus::Registry) -> Result<Arc<Self>, prometheus::Error> {
        use crate::metrics::register;
        Ok(Arc::new(HttpMetrics {
            connections: register(
                r,
                IntGauge::new("http_connections", "HTTP and HTTPS connections open now")?,
            )?,
            refusals: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "http_refusals_total",
                        "HTTP connections and streams refused or closed by a limit, by reason \
                         (connection_cap, client_connection_cap, header_timeout, idle_timeout, \
                         tls_handshake_timeout, stream_cap, client_stream_cap)",
                    ),
                    &["reason"],
                )?,
            )?,
        }))
    }
}

impl garasi_net::ConnMetrics for HttpMetrics {
    fn opened(&self) {
        self.connections.inc();
    }
    fn closed(&self) {
        self.connections.dec();
    }
    fn refused(&self, reason: &'static str) {
        self.refusals.with_label_values(&[reason]).inc();
    }
}

/// Live streams open, in total and per client (IPv4 address or IPv6 /64).
pub struct Streams {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    max_total: usize,
    max_per_client: usize,
    metrics: Arc<HttpMetrics>,
}

/// A stream's place; dropping it (the body ends or the client goes) frees it.
struct StreamSlot {
    streams: Arc<Streams>,
    client: IpAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut g = self.streams.open.lock();
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.client);
            }
        }
    }
}

impl Streams {
    pub fn new(max_total: usize, max_per_client: usize, metrics: Arc<HttpMetrics>) -> Arc<Self> {
        Arc::new(Streams {
            open: Mutex::default(),
            max_total,
            max_per_client,
            metrics,
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, ApiError> {
        let client = garasi_net::client_key(ip);
        let mut g = self.open.lock();
        let mine = g.1.get(&client).copied().unwrap_or(0);
        if mine >= self.max_per_client {
            drop(g);
            self.metrics.refused_stream("client_stream_cap");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this device has {mine} live streams open already (the most allowed): \
                     close other tabs or boards on it, then reload"
                ),
            ));
        }
        if g.0 >= self.max_total {
            let open = g.0;
            drop(g);
            self.metrics.refused_stream("stream_cap");
            tracing::warn!(
                open,
                max = self.max_total,
                "live stream refused: the node's stream cap is reached (--http-max-streams)"
            );
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the node has {open} live streams open (the most it serves): \
                     retry in a minute, or close boards that nobody watches"
                ),
            ));
        }
        g.0 += 1;
        *g.1.entry(client).or_default() += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            client,
        })
    }
}

impl HttpMetrics {
    fn refused_stream(&self, reason: &'static str) {
        garasi_net::ConnMetrics::refused(self, reason);
    }
}

fn is_event_stream(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Middleware: an event-stream response takes a stream place for as long as its body
/// lives, or is replaced by a JSON 429 (this client has too many) or 503 (the node has).
pub async fn cap_streams(
    State(streams): State<Arc<Streams>>,
    ClientIp(ip): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    if !is_event_stream(&resp) {
        return resp;
    }
    match streams.admit(ip) {
        Ok(slot) => resp.map(|body| {
            let stream = body.into_data_stream().map(move |chunk| {
                // The slot lives as long as the stream does.
                let _held = &slot;
                chunk
            });
            axum::body::Body::from_stream(stream)
        }),
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
    }
}
