//! One connection, start to end: the TLS handshake (bounded), then HTTP/1.1 or HTTP/2
//! through hyper with a header-read timeout, and a watchdog that closes the connection
//! when it has sent no complete request in time, sat idle too long, or was chosen to
//! make room for a new one. Every byte read or written marks it active; every request
//! being served marks it busy (never closed for room or idleness while busy).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::registry::{ConnState, Registry, Slot};
use super::ConnLimits;

/// A stream that marks its connection active whenever bytes move.
pub(super) struct Tracked<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.state.unflushed.store(false, Ordering::Release);
        }
        r
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Refuses an HTTP/2 connection preface where only HTTP/1.1 is served: hyper-util's
/// builder reads the preface itself when it serves upgrades and ignores `http1_only`
/// then (it answered HTTP/2 on the edge's plain port).
struct H1Only<T> {
    inner: T,
    /// Bytes of `PRI ` seen so far; None once the first bytes were something else.
    matched: Option<usize>,
}

const H2_PREFACE: &[u8; 4] = b"PRI ";

impl<T: AsyncRead + Unpin> AsyncRead for H1Only<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(mut m) = self.matched {
            for b in &buf.filled()[before..] {
                if *b != H2_PREFACE[m] {
                    self.matched = None;
                    return r;
                }
                m += 1;
                if m == H2_PREFACE.len() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "HTTP/2 is not served on this port",
                    )));
                }
            }
            self.matched = Some(m);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H1Only<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// In every request's extensions: lets a route say that its body is still arriving and
/// nothing has authenticated it yet (the cloud's enrolment), so that the connection
/// stays evictable meanwhile (a slow unauthenticated body must not hold a place a
/// client being served needs).
#[derive(Clone)]
pub struct ConnActivity(Arc<ConnState>);

impl ConnActivity {
    /// Marks the connection as carrying an authenticated client (a depot, the admin):
    /// its responses keep it busy until they are written to the socket.
    pub fn authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Release);
    }

    /// Until the guard is dropped, this request does not make its connection busy.
    pub fn unauthenticated_body(&self) -> UnauthenticatedBody {
        self.0.unauthenticated.fetch_add(1, Ordering::AcqRel);
        UnauthenticatedBody(self.0.clone())
    }
}

/// See [`ConnActivity::unauthenticated_body`].
pub struct UnauthenticatedBody(Arc<ConnState>);

impl Drop for UnauthenticatedBody {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is sent (or dropped), and
/// for an authenticated client until the connection has flushed it: a large response
/// (a depot's pull) is busy while its body goes out, never evicted as idle.
struct HeldBody {
    inner: axum::body::Body,
    busy: Option<InFlight>,
}

impl hyper::body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let last = match &r {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if last {
            if let Some(busy) = self.busy.take() {
                // The connection still has to write what it was handed: an
                // authenticated client's connection stays busy until it is flushed
                // (an unauthenticated one cannot hold a place by reading slowly).
                if busy.0.authenticated.load(Ordering::Acquire) {
                    busy.0.unflushed.store(true, Ordering::Release);
                }
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// In every request's extensions: the connection it came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    /// The request came over TLS (so, e.g., cookies may be marked `Secure`).
    pub tls: bool,
}

/// Everything one connection needs from the server.
pub(super) struct Ctx {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub app: Router,
    pub cancel: CancellationToken,
    pub limits: ConnLimits,
    pub registry: Arc<Registry>,
    /// Shared by every listener of the server (see `arriving`).
    pub body_budget: Arc<super::arriving::BodyBudget>,
}

/// Serves one accepted connection until it ends, is closed by a limit, or the server
/// stops (requests in flight then finish; idle connections close).
pub(super) async fn run(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: Slot,
    ctx: Arc<Ctx>,
) {
    let state = slot.state.clone();
    let io = Tracked {
        inner: tcp,
        state: state.clone(),
    };
    match &ctx.tls {
        None => serve_http(io, peer, false, &state, &ctx).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(io));
            let tls = tokio::select! {
                r = handshake => r,
                _ = state.evicted.cancelled() => return,
                _ = ctx.cancel.cancelled() => return,
            };
            match tls {
                Ok(Ok(s)) => serve_http(s, peer, true, &state, &ctx).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => ctx.registry.closed("tls_handshake_timeout"),
            }
        }
    }
    drop(slot);
}

fn builder(limits: &ConnLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // hyper also applies this while a kept-alive HTTP/1.1 connection waits for its next
    // request, so it is HTTP/1.1's idle timeout as well.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    if limits.h2_max_streams == 0 {
        return b.http1_only();
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(16 * 1024)
        .keep_alive_interval(None);
    b
}

async fn serve_http<I>(
    io: I,
    peer: std::net::SocketAddr,
    tls: bool,
    state: &Arc<ConnState>,
    ctx: &Ctx,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(ctx.app.clone());
    let st = state.clone();
    let (body_timeout, budget) = (ctx.limits.body_timeout, ctx.body_budget.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        use hyper::service::Service as _;
        let busy = InFlight::enter(&st);
        // A body still to come from a client nothing has authenticated: evictable,
        // timed and budgeted until it is complete (`arriving`).
        let mut req = req.map(|b| {
            if hyper::body::Body::is_end_stream(&b) || st.authenticated.load(Ordering::Acquire) {
                axum::body::Body::new(b)
            } else {
                let guard = ConnActivity(st.clone()).unauthenticated_body();
                axum::body::Body::new(super::arriving::ArrivingBody::new(
                    b,
                    st.clone(),
                    guard,
                    body_timeout,
                    budget.clone(),
                    super::registry::client_key(peer.ip()),
                ))
            }
        });
        let ext = req.extensions_mut();
        ext.insert(ConnActivity(st.clone()));
        ext.insert(ConnInfo { peer, tls });
        // What axum's `ConnectInfo` extractor reads, as `into_make_service_with_connect_info`
        // would insert it.
        ext.insert(axum::extract::ConnectInfo(peer));
        let fut = svc.call(req);
        async move {
            let r = fut.await;
            // In flight until the response body is sent, not just its head.
            r.map(|resp| {
                resp.map(|inner| {
                    axum::body::Body::new(HeldBody {
                        inner,
                        busy: Some(busy),
                    })
                })
            })
        }
    });
    let builder = builder(&ctx.limits);
    // With upgrades: a charger's WebSocket (OCPP) leaves HTTP here. The route has checked
    // its credentials before answering 101; from then on the socket belongs to the route,
    // no longer to this connection's place under the caps.
    let io = H1Only {
        inner: io,
        matched: (ctx.limits.h2_max_streams == 0).then_some(0),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = ctx.cancel.cancelled() => {
                // Stopping the server ends its connections: requests in flight finish.
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = state.evicted.cancelled() => return,
            _ = tick.tick() => {
                // Busy with a request (not just a body still arriving unauthenticated,
                // which its own deadline ends): no timeout applies.
                let arriving = state.unauthenticated.load(Ordering::Acquire);
                if state.in_flight.load(Ordering::Acquire) > arriving {
                    continue;
                }
                let limits = &ctx.limits;
                if state.requests.load(Ordering::Relaxed) == 0
                    && state.age() > limits.header_read_timeout
                {
                    // No complete request yet (HTTP/2 too, which hyper does not time).
                    ctx.registry.closed("header_timeout");
                    return;
                }
                if state.idle_for() > limits.idle_timeout {
                    ctx.registry.closed("idle_timeout");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        let timed_out = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        if timed_out {
            ctx.registry.closed("header_timeout");
        } else {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
