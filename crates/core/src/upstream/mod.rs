//! The HTTP/1.1 client of the call path (named calls and the proxy).
//!
//! Each connection is driven by the task that uses it: the request's task polls hyper's
//! connection future while it waits for the response head, and the response body polls it
//! while the server streams the body out. When the body ends, the connection goes back to
//! an idle list for its origin. There is no connection task and no channel between tasks
//! on this path, which is what makes it cheap (see BENCHMARKS.md, issue 5).
//!
//! Token requests, profile reads, revocation and webhooks use `reqwest` (`crate::http`):
//! they are rare, and its conveniences matter more there than its cost.

mod body;
pub mod egress;
mod tls;

use std::collections::HashMap;
use std::future::{Future as _, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use url::Url;

pub use body::PooledBody;
pub use tls::{TlsError, identity_config};

/// A request body on the call path.
pub type ReqBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle connection is kept (the upstream may close it sooner; that is noticed
/// when it is next taken).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a connector's requests go: built once per connector from its `base_url`.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `scheme://host:port`, the idle-list key.
    key: Arc<str>,
    https: bool,
    /// Host name or IP address (IPv6 without brackets), for connecting and for TLS.
    host: Arc<str>,
    port: u16,
    /// The `Host` header: the host, and the port when the URL names one.
    pub(crate) host_header: HeaderValue,
    /// Connect only to public addresses (SECURITY S16), checked after resolution.
    public_only: bool,
}

/// Why a URL names no origin Latchkey can send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL has no port")]
    NoPort,
    #[error("the host cannot go into a header")]
    Host,
}

impl Origin {
    pub fn from_url(url: &Url, public_only: bool) -> Result<Origin, OriginError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            s => return Err(OriginError::Scheme(s.to_owned())),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(OriginError::NoHost),
        };
        let port = url.port_or_known_default().ok_or(OriginError::NoPort)?;
        let host_str = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let host_header = HeaderValue::from_str(&authority).map_err(|_| OriginError::Host)?;
        // A connection made under one egress rule is never handed to the other.
        let rule = if public_only { "public:" } else { "" };
        Ok(Origin {
            key: format!("{rule}{}://{authority}", url.scheme()).into(),
            https,
            host: host.into(),
            port,
            host_header,
            public_only,
        })
    }

    /// The same origin under the other egress rule: its connections are pooled apart.
    pub fn under_rule(&self, public_only: bool) -> Origin {
        let bare = self.key.strip_prefix("public:").unwrap_or(&self.key);
        let rule = if public_only { "public:" } else { "" };
        Origin { key: format!("{rule}{bare}").into(), public_only, ..self.clone() }
    }
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, DNS, TLS handshake, connect timeout).
    Connect(String),
    /// The connection failed while the request was sent or the head was awaited.
    Lost(String),
    /// No response head within the connector's timeout.
    Timeout,
}

type Io = TokioIo<tls::Stream>;

/// One upstream connection: hyper's sender and the connection future that does its I/O.
struct Conn {
    send: http1::SendRequest<ReqBody>,
    io: Pin<Box<http1::Connection<Io, ReqBody>>>,
    /// The connection future finished (closed or failed): never reuse.
    done: bool,
    idle_since: Instant,
    /// The serving thread whose I/O driver this connection is registered with.
    thread: usize,
}

impl Conn {
    /// Polls the connection future once, so it does whatever I/O is pending.
    fn drive(&mut self, cx: &mut std::task::Context<'_>) {
        if !self.done && self.io.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
    }

    fn reusable(&self) -> bool {
        !self.done && self.send.is_ready()
    }
}

thread_local! {
    static SERVING_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as serving thread `index` (one single-threaded runtime per CPU):
/// connections it opens go back to its own idle lists, and it takes only those, so a
/// connection is always driven by the runtime it is registered with. Threads that are not
/// serving threads (one multi-threaded runtime: tests, the CLI, the main runtime) share lists
/// of their own.
pub fn set_serving_thread(index: usize) {
    SERVING_THREAD.set(index + 1);
}

fn serving_thread() -> usize {
    SERVING_THREAD.get()
}

/// Idle connections: per serving thread, per origin.
type IdleLists = Vec<HashMap<Arc<str>, Vec<Conn>>>;

/// The client of one TLS identity: the default one, or one per client certificate.
pub struct Upstream {
    tls: Result<Arc<rustls::ClientConfig>, TlsError>,
    idle: Mutex<IdleLists>,
}

impl Upstream {
    /// The client that verifies servers with the system's trust store and has no client
    /// certificate.
    pub fn new() -> Upstream {
        Upstream { tls: tls::default_config().map(Arc::new), idle: Mutex::new(Vec::new()) }
    }

    /// A client with its own TLS configuration (a client certificate, a private CA).
    pub fn with_tls(tls: rustls::ClientConfig) -> Upstream {
        Upstream { tls: Ok(Arc::new(tls)), idle: Mutex::new(Vec::new()) }
    }

    /// Sends `req` (origin-form URI; the `Host` header is set here) and returns when the
    /// response head arrived, within `timeout`; the body then fails if the upstream goes
    /// silent for `timeout` in its middle.
    ///
    /// A reused connection can be closed by the upstream at the moment a request goes out
    /// (its idle timeout ran out). A request that was not written yet is sent again on a new
    /// connection; so is an idempotent request without a body (GET, HEAD, OPTIONS, DELETE,
    /// PUT; RFC 9110 §9.2.2) that got no answer. Anything else fails: it may have been done.
    pub async fn send(
        self: &Arc<Self>,
        origin: &Origin,
        mut req: Request<ReqBody>,
        timeout: Duration,
    ) -> Result<Response<PooledBody>, SendError> {
        req.headers_mut().insert(http::header::HOST, origin.host_header.clone());
        let mut again = Replay::of(&req);
        let attempt = async {
            let mut fresh = false;
            loop {
                let (mut conn, reused) = match self.checkout(origin).filter(|_| !fresh) {
                    Some(c) => (c, true),
                    None => (self.connect(origin).await?, false),
                };
                let mut failed = match exchange(&mut conn, req).await {
                    Ok(resp) => return Ok((conn, resp)),
                    Err(e) => e,
                };
                req = match (reused, failed.take_message()) {
                    (true, Some(unsent)) => unsent,
                    (true, None) => match again.take() {
                        Some(replay) => replay.request(),
                        None => return Err(SendError::Lost(cause(failed.error()))),
                    },
                    (false, _) => return Err(SendError::Lost(cause(failed.error()))),
                };
                fresh = true;
            }
        };
        let (conn, resp) = tokio::time::timeout(timeout, attempt).await.map_err(|_| SendError::Timeout)??;
        let (parts, incoming) = resp.into_parts();
        let body = PooledBody::new(incoming, conn, Arc::downgrade(self), origin.key.clone(), timeout);
        Ok(Response::from_parts(parts, body))
    }

    /// The most recently used idle connection that is still open and ready.
    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            let mut conn = self.lock().get_mut(serving_thread())?.get_mut(&origin.key)?.pop()?;
            if conn.idle_since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            // A connection the upstream closed while it sat idle finishes when polled.
            conn.drive(&mut cx);
            if conn.reusable() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, key: Arc<str>, mut conn: Conn) {
        if !conn.reusable() {
            return;
        }
        let now = Instant::now();
        conn.idle_since = now;
        let mut idle = self.lock();
        if idle.len() <= conn.thread {
            idle.resize_with(conn.thread + 1, HashMap::new);
        }
        let list = idle[conn.thread].entry(key).or_default();
        // The oldest are at the front; close those that waited too long.
        let stale = list.iter().take_while(|c| now.duration_since(c.idle_since) >= IDLE_TIMEOUT).count();
        list.drain(..stale);
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleLists> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, SendError> {
        let connect = async {
            let connected = if origin.public_only {
                let addrs = egress::resolve_public(&origin.host, origin.port).await.map_err(SendError::Connect)?;
                tokio::net::TcpStream::connect(&addrs[..]).await
            } else {
                tokio::net::TcpStream::connect((&*origin.host, origin.port)).await
            };
            connected.map_err(|e| SendError::Connect(e.to_string()))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| SendError::Connect(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))??;
        tcp.set_nodelay(true).map_err(|e| SendError::Connect(e.to_string()))?;
        let stream = if origin.https {
            let config = self.tls.as_ref().map_err(|e| SendError::Connect(format!("TLS is not available: {e}")))?;
            let name = ServerName::try_from(origin.host.to_string())
                .map_err(|_| SendError::Connect(format!("`{}` is not a valid TLS server name", origin.host)))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| SendError::Connect(format!("TLS handshake failed: {e}")))?;
            tls::Stream::Tls(Box::new(tls))
        } else {
            tls::Stream::Plain(tcp)
        };
        let (send, io) =
            http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(|e| SendError::Connect(cause(&e)))?;
        let mut conn =
            Conn { send, io: Box::pin(io), done: false, idle_since: Instant::now(), thread: serving_thread() };
        // A new connection takes a request once its future has been polled.
        poll_fn(|cx| {
            conn.drive(cx);
            if conn.done {
                return Poll::Ready(Err(SendError::Connect("the upstream closed the new connection".into())));
            }
            conn.send.poll_ready(cx).map_err(|e| SendError::Connect(cause(&e)))
        })
        .await?;
        Ok(conn)
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream::new()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// What it takes to send a request again: only for idempotent methods without a body.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &Request<ReqBody>) -> Option<Replay> {
        use http::Method;
        use http_body::Body as _;
        let idempotent = [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE, Method::PUT];
        (idempotent.contains(req.method()) && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(self) -> Request<ReqBody> {
        let mut req = Request::new(ReqBody::default());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Sends one request on `conn` and drives the connection until the response head is in.
async fn exchange(
    conn: &mut Conn,
    req: Request<ReqBody>,
) -> Result<Response<hyper::body::Incoming>, hyper::client::conn::TrySendError<Request<ReqBody>>> {
    let mut response = std::pin::pin!(conn.send.try_send_request(req));
    poll_fn(|cx| {
        conn.drive(cx);
        response.as_mut().poll(cx)
    })
    .await
}

/// What a hyper error says happened: its innermost cause, or its own text (hyper's texts
/// never carry the URL).
fn cause(e: &hyper::Error) -> String {
    crate::error::innermost_cause(e).unwrap_or_else(|| e.to_string())
}
