//! An in-process upstream that records every request exactly as it arrived.
//!
//! Any path echoes `{"method", "uri", "headers", "body"}` with status 200, except:
//! `/quiet` answers `{"ok":true,"items":[1,2,3]}` and echoes nothing, `/status/<code>` answers that status, `/redirect` answers 302 to another origin,
//! `/cookies` sets a cookie and hop-by-hop headers, `/spoof` answers 409 with `Latchkey-*`
//! headers of its own, `/slow/<ms>` waits first,
//! `/chunks/<n>` streams n chunks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target exactly as sent (path and query, still percent-encoded).
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Clone, Default)]
pub struct Recorder {
    pub base_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

/// Counts the TCP connections accepted, so tests can see whether connections were reused.
struct CountingListener {
    inner: tokio::net::TcpListener,
    count: Arc<AtomicUsize>,
}

impl axum::serve::Listener for CountingListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok(conn) = self.inner.accept().await {
                self.count.fetch_add(1, Ordering::SeqCst);
                return conn;
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Recorder {
    /// Starts a recorder on 127.0.0.1:0 in the current tokio runtime.
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let rec = Recorder { base_url: format!("http://{addr}"), ..Recorder::default() };
        let app = Router::new().fallback(handle).with_state(rec.clone());
        let listener = CountingListener { inner: listener, count: rec.connections.clone() };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        rec
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the recorder received no request")
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

async fn handle(State(rec): State<Recorder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let uri = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let record =
        Recorded { method: parts.method.to_string(), uri: uri.clone(), headers: headers.clone(), body: body.to_vec() };
    rec.log.lock().unwrap_or_else(|e| e.into_inner()).push(record);

    // Special paths may sit below any base path (`/api/status/500`).
    let path = parts.uri.path();
    let after = |marker: &str| path.find(marker).map(|i| &path[i + marker.len()..]);
    let mut status = 200u16;
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(code) = after("/status/") {
        status = code.parse().unwrap_or(400);
    } else if path.ends_with("/quiet") {
        // No echo: an answer that carries nothing of the request (the MCP canary scan).
        let body = Body::from(r#"{"ok":true,"items":[1,2,3]}"#);
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .expect("response");
    } else if path.ends_with("/redirect") {
        status = 302;
        extra.push(("location", "http://127.0.0.2:9/elsewhere".into()));
    } else if path.ends_with("/cookies") {
        extra.push(("set-cookie", "session=upstream-cookie; Path=/".into()));
        extra.push(("x-upstream", "kept".into()));
        extra.push(("keep-alive", "timeout=5".into()));
    } else if path.ends_with("/spoof") {
        // An upstream speaking as if it were Latchkey (SECURITY: its words must not pass as ours).
        status = 409;
        extra.push(("latchkey-error", "upstream_timeout".into()));
        extra.push(("latchkey-signature", "t=1,v1=forged".into()));
        extra.push(("latchkey-request-id", "forged".into()));
        extra.push(("x-upstream", "kept".into()));
    } else if path.ends_with("/aws-expired") {
        // AWS refusing temporary credentials that expired: the session token of the first
        // request to this path is refused with `ExpiredToken`, any other one is taken.
        let token = |r: &Recorded| r.header("x-amz-security-token").map(str::to_owned);
        let first = rec
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.uri.split('?').next().is_some_and(|p| p.ends_with("/aws-expired")))
            .and_then(token);
        if first.is_some()
            && first.as_deref() == parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok())
        {
            let body = "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>\
                        <Message>The security token included in the request is expired</Message></Error></ErrorResponse>";
            return Response::builder().status(403).body(Body::from(body)).expect("response");
        }
    } else if let Some(ms) = after("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    } else if let Some(n) = after("/chunks/") {
        let n: usize = n.parse().unwrap_or(1);
        let stream =
            futures_util::stream::iter((0..n).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("chunk{i};")))));
        return Response::builder().status(200).body(Body::from_stream(stream)).expect("response");
    }
    let header_map: BTreeMap<String, Vec<String>> = headers.into_iter().fold(BTreeMap::new(), |mut m, (k, v)| {
        m.entry(k).or_default().push(v);
        m
    });
    let echo = json!({
        "method": parts.method.as_str(),
        "uri": uri,
        "headers": header_map,
        "body": String::from_utf8_lossy(&body),
    });
    let mut builder = Response::builder().status(status).header("content-type", "application/json");
    for (k, v) in extra {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(echo.to_string())).expect("response")
}
