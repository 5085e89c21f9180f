//! An HTTP forwarder in front of a real peer that counts and records what passes: each
//! request's method, target and `Authorization` header, and the status that came back. For
//! tests that must count round trips to a server that cannot count them itself (httpbin).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

/// One request that passed, with the peer's answer.
#[derive(Debug, Clone)]
pub struct Passed {
    pub method: String,
    pub uri: String,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Clone)]
pub struct Forwarder {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    target: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<Passed>>>,
    refuse: Arc<Mutex<Option<String>>>,
}

impl Forwarder {
    /// Forwards everything to `target` (`http://host:port`), on 127.0.0.1:0 in the current runtime.
    pub async fn start(target: &str) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
        let addr = listener.local_addr().expect("addr");
        let fwd = Forwarder {
            base_url: format!("http://{addr}"),
            target: target.trim_end_matches('/').to_owned(),
            client: crate::latchkey::test_client(),
            log: Arc::default(),
            refuse: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(fwd.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fwd
    }

    /// Every request so far, in order.
    pub fn passed(&self) -> Vec<Passed> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers the next request that carries an `Authorization` header itself, with a 401 and
    /// this `WWW-Authenticate` (a nonce the server no longer takes), instead of forwarding it.
    pub fn refuse_next_signed(&self, www_authenticate: &str) {
        *self.refuse.lock().unwrap_or_else(|e| e.into_inner()) = Some(www_authenticate.to_owned());
    }

    /// Forgets what passed so far.
    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

async fn forward(State(fwd): State<Forwarder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("read the request body");
    let uri = parts.uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    let authorization = parts.headers.get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_owned());
    let refusal = authorization.as_ref().and_then(|_| fwd.refuse.lock().unwrap_or_else(|e| e.into_inner()).take());
    if let Some(challenge) = refusal {
        let passed = Passed { method: parts.method.to_string(), uri, authorization, status: 401 };
        fwd.log.lock().unwrap_or_else(|e| e.into_inner()).push(passed);
        return Response::builder()
            .status(401)
            .header(http::header::WWW_AUTHENTICATE, challenge)
            .body(Body::empty())
            .expect("response");
    }
    let mut out = fwd.client.request(parts.method.clone(), format!("{}{uri}", fwd.target)).body(body);
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let answer = out.send().await.expect("the peer answers");
    let status = answer.status();
    fwd.log.lock().unwrap_or_else(|e| e.into_inner()).push(Passed {
        method: parts.method.to_string(),
        uri,
        authorization,
        status: status.as_u16(),
    });
    let mut resp = Response::builder().status(status);
    for (k, v) in answer.headers() {
        if !["content-length", "transfer-encoding", "connection"].contains(&k.as_str()) {
            resp = resp.header(k, v);
        }
    }
    resp.body(Body::from(answer.bytes().await.expect("the peer's body"))).expect("response")
}
