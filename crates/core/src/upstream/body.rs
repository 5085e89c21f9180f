//! The response body of the call path: it drives its connection while it is read, and
//! gives the connection back to the idle list once the whole body was read.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Conn, Upstream};

pub struct PooledBody {
    body: Incoming,
    conn: Option<Conn>,
    home: Weak<Upstream>,
    key: Arc<str>,
    /// The longest the upstream may go silent in the middle of a body.
    idle: Duration,
    /// Armed only while a read waits, so a body that is already in costs no timer.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The upstream sent part of a body, then nothing for the connector's `timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0} ms in the middle of the response body")]
pub struct BodyStalled(u128);

impl PooledBody {
    pub(super) fn new(body: Incoming, conn: Conn, home: Weak<Upstream>, key: Arc<str>, idle: Duration) -> PooledBody {
        PooledBody { body, conn: Some(conn), home, key, idle, silence: None }
    }

    /// The body was read to its end: the connection can take the next request.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take() {
            // Lets hyper finish the message and mark the connection ready.
            conn.drive(cx);
            if let Some(home) = self.home.upgrade() {
                home.checkin(self.key.clone(), conn);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = super::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {
                let idle = this.idle;
                let silence = this.silence.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if silence.as_mut().poll(cx).is_ready() {
                    this.silence = None;
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(idle.as_millis())))));
                }
                return Poll::Pending;
            }
        }
        this.silence = None;
        frame.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection mid-message: it is closed.
        if self.conn.is_some() && self.body.is_end_stream() {
            self.release(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }
}
