//! The response body of the call path: it drives its connection while it is read, and
//! gives the connection back to the idle list once the whole body was read.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Conn, Upstream};

pub struct PooledBody {
    body: Incoming,
    conn: Option<Conn>,
    home: Weak<Upstream>,
    key: Arc<str>,
}

impl PooledBody {
    pub(super) fn new(body: Incoming, conn: Conn, home: Weak<Upstream>, key: Arc<str>) -> PooledBody {
        PooledBody { body, conn: Some(conn), home, key }
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
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            _ => {}
        }
        frame
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
