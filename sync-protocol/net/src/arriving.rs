//! Request bodies still arriving from a client nothing has authenticated yet. Such a
//! body does not make its connection busy (the connection stays evictable, so stalled
//! bodies cannot hold every place), must arrive within `ConnLimits::body_timeout`, and
//! its bytes count against one budget for all such bodies of the server, so a flood of
//! half-sent bodies cannot grow memory. Once a route marks the connection authenticated
//! (`ConnActivity::authenticated`), the body is an ordinary one from its next frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::conn::UnauthenticatedBody;
use super::registry::ConnState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes of unauthenticated bodies the server holds at most, all connections together.
pub(crate) struct BodyBudget {
    left: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            left: AtomicUsize::new(bytes),
        })
    }

    fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(n))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

/// See the module documentation.
pub(crate) struct ArrivingBody {
    inner: Incoming,
    state: Arc<ConnState>,
    /// Held while the body arrives unauthenticated.
    guard: Option<UnauthenticatedBody>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
    budget: Arc<BodyBudget>,
    reserved: usize,
}

impl ArrivingBody {
    pub(crate) fn new(
        inner: Incoming,
        state: Arc<ConnState>,
        guard: UnauthenticatedBody,
        timeout: std::time::Duration,
        budget: Arc<BodyBudget>,
    ) -> Self {
        ArrivingBody {
            inner,
            state,
            guard: Some(guard),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            budget,
            reserved: 0,
        }
    }

    /// The body is complete, failed or authenticated: no longer an unauthenticated one.
    fn settle(&mut self) {
        self.guard = None;
        self.budget.give(std::mem::take(&mut self.reserved));
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
        if this.guard.is_some() && this.state.authenticated.load(Ordering::Acquire) {
            this.settle();
        }
        if this.guard.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
            this.settle();
            let s = this.timeout.as_secs();
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {s} s: send it at once"
            )
            .into())));
        }
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) if this.guard.is_some() => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                if !this.budget.take(n) {
                    this.settle();
                    return Poll::Ready(Some(Err(
                        "the server is receiving too many request bodies: try again shortly".into(),
                    )));
                }
                this.reserved += n;
            }
            Poll::Ready(None | Some(Err(_))) => this.settle(),
            _ => {}
        }
        if this.inner.is_end_stream() {
            // Complete: the connection is busy with it from here (its bytes stay counted
            // until the body is dropped, roughly when the route has parsed it).
            this.guard = None;
        }
        r.map(|o| o.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
