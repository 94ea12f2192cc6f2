//! Request bodies still arriving from a client nothing has authenticated yet. Such a
//! body does not make its connection busy (the connection stays evictable, so stalled
//! bodies cannot hold every place), must arrive within `ConnLimits::body_timeout`, and
//! its bytes count against one budget for all such bodies of the server, so a flood of
//! half-sent bodies cannot grow memory. Its bytes are copied into one buffer per body as
//! they arrive (a body trickled a byte at a time otherwise kept a whole read buffer
//! alive per byte: measured ~4 KiB of memory per byte received) and the buffer's size is
//! what the budget counts; each client address may hold an eighth of the budget. Once a
//! route marks the connection authenticated (`ConnActivity::authenticated`), the body is
//! an ordinary one from its next frame.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use bytes::BytesMut;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::conn::UnauthenticatedBody;
use super::registry::ConnState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes of unauthenticated bodies the server holds at most, all connections together,
/// and each client address at most an eighth of that.
pub(crate) struct BodyBudget {
    total: usize,
    used: parking_lot::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            total: bytes,
            used: parking_lot::Mutex::new((0, HashMap::new())),
        })
    }

    fn take(&self, client: IpAddr, n: usize) -> bool {
        let mut g = self.used.lock();
        let (all, per) = &mut *g;
        let mine = per.get(&client).copied().unwrap_or(0);
        if *all + n > self.total || mine + n > (self.total / 8).max(1) {
            return false;
        }
        *all += n;
        per.insert(client, mine + n);
        true
    }

    fn give(&self, client: IpAddr, n: usize) {
        if n == 0 {
            return;
        }
        let mut g = self.used.lock();
        let (all, per) = &mut *g;
        *all = all.saturating_sub(n);
        if let Some(m) = per.get_mut(&client) {
            *m = m.saturating_sub(n);
            if *m == 0 {
                per.remove(&client);
            }
        }
    }
}

/// Buffered bytes handed on as one frame once this many have arrived (or the body ended).
const FLUSH_AT: usize = 16 * 1024;

/// See the module documentation.
pub(crate) struct ArrivingBody {
    inner: Incoming,
    state: Arc<ConnState>,
    /// Held while the body arrives unauthenticated.
    guard: Option<UnauthenticatedBody>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
    budget: Arc<BodyBudget>,
    client: IpAddr,
    reserved: usize,
    /// What arrived and is not handed on yet.
    buf: BytesMut,
    /// Trailers that came while data was still buffered.
    trailers: Option<Frame<Bytes>>,
    ended: bool,
}

impl ArrivingBody {
    pub(crate) fn new(
        inner: Incoming,
        state: Arc<ConnState>,
        guard: UnauthenticatedBody,
        timeout: std::time::Duration,
        budget: Arc<BodyBudget>,
        client: IpAddr,
    ) -> Self {
        ArrivingBody {
            inner,
            state,
            guard: Some(guard),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            budget,
            client,
            reserved: 0,
            buf: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    /// The body is complete, failed or authenticated: no longer an unauthenticated one.
    fn settle(&mut self) {
        self.guard = None;
        self.budget
            .give(self.client, std::mem::take(&mut self.reserved));
    }

    /// What is buffered, as one frame (None when nothing is).
    fn flush(&mut self) -> Option<Frame<Bytes>> {
        (!self.buf.is_empty()).then(|| Frame::data(self.buf.split().freeze()))
    }
}

impl Drop for ArrivingBody {
    fn drop(&mut self) {
        self.settle();
    }
}

impl Body for ArrivingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.guard.is_some() && this.state.authenticated.load(Ordering::Acquire) {
                // Authenticated now: hand on what is buffered, then pass frames through
                // (its bytes stay counted until the body is dropped).
                this.guard = None;
            }
            if this.guard.is_none() || this.ended {
                if let Some(f) = this.flush() {
                    return Poll::Ready(Some(Ok(f)));
                }
                if let Some(t) = this.trailers.take() {
                    return Poll::Ready(Some(Ok(t)));
                }
                if this.ended {
                    return Poll::Ready(None);
                }
                let r = Pin::new(&mut this.inner).poll_frame(cx);
                return r.map(|o| o.map(|f| f.map_err(|e| Box::new(e) as BoxError)));
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.settle();
                let s = this.timeout.as_secs();
                return Poll::Ready(Some(Err(format!(
                    "the request body did not arrive within {s} s: send it at once"
                )
                .into())));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    return match this.buf.len() >= FLUSH_AT {
                        true => Poll::Ready(this.flush().map(Ok)),
                        false => Poll::Pending,
                    };
                }
                Poll::Ready(None) => {
                    // Complete: the connection is busy with it from here.
                    this.ended = true;
                    this.guard = None;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.settle();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let before = this.buf.capacity();
                        this.buf.reserve(data.len());
                        let grown = this.buf.capacity().saturating_sub(before);
                        if !this.budget.take(this.client, grown) {
                            this.settle();
                            return Poll::Ready(Some(Err(
                                "the server is receiving too many request bodies: try again \
                                 shortly"
                                    .into(),
                            )));
                        }
                        this.reserved += grown;
                        // Copied: the read buffer the frame points into is freed.
                        this.buf.extend_from_slice(&data);
                        if this.buf.len() >= FLUSH_AT {
                            return Poll::Ready(this.flush().map(Ok));
                        }
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        this.ended = true;
                        this.guard = None;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buf.is_empty() && self.trailers.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
