//! An in-process OAuth provider whose answers a test writes: a token endpoint that echoes
//! everything it received into its error, answers any JSON it is given (Slack's shapes,
//! broken lifetimes, tokens with line breaks), or streams a body larger than any client
//! should read, with or without `Content-Length`. Also `/authorize` (approves at once),
//! `/profile` (answers as told), `/revoke` (200) and a resource at any other path (200 with
//! the `Authorization` it got).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

/// What an endpoint answers to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Fresh tokens: `{"access_token": "hat-…", "token_type": "Bearer", "expires_in": 3600,
    /// "refresh_token": "hrt-…"}` (each recorded in [`HostileProvider::issued_tokens`]).
    Tokens,
    /// This status and JSON body, as given.
    Json(u16, Value),
    /// An RFC 6749 §5.2 error whose `error_description` is the whole request as received
    /// (the body, then the request line and every header), after enough filler that `place`'s text, when
    /// given, starts at that character of the description.
    Echo { status: u16, error: &'static str, place: Option<(String, usize)> },
    /// A valid JSON token response of `len` bytes (a very long `access_token`), streamed in
    /// 64 KiB chunks; with `Content-Length`, or chunked without one.
    Huge { status: u16, len: usize, content_length: bool },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

struct Inner {
    token: VecDeque<Answer>,
    profile: Answer,
    received: Vec<Received>,
    issued: Vec<String>,
    counter: u64,
}

#[derive(Clone)]
pub struct HostileProvider {
    pub base_url: String,
    pub token_url: String,
    pub authorize_url: String,
    pub profile_url: String,
    pub revoke_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl HostileProvider {
    /// Starts on 127.0.0.1:0 in the current tokio runtime. Until told otherwise the token
    /// endpoint issues tokens and the profile is `{"id": "u-1"}`.
    pub async fn start() -> HostileProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind hostile provider");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let p = HostileProvider {
            token_url: format!("{base_url}/token"),
            authorize_url: format!("{base_url}/authorize"),
            profile_url: format!("{base_url}/profile"),
            revoke_url: format!("{base_url}/revoke"),
            base_url,
            inner: Arc::new(Mutex::new(Inner {
                token: VecDeque::new(),
                profile: Answer::Json(200, json!({"id": "u-1"})),
                received: Vec::new(),
                issued: Vec::new(),
                counter: 0,
            })),
        };
        let app = Router::new().fallback(handle).with_state(p.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        p
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The next token requests get these answers, one each; the last one is repeated for
    /// every later request.
    pub fn token_answers(&self, answers: &[Answer]) {
        self.with(|s| {
            s.token.clear();
            s.token.extend(answers.iter().cloned());
        });
    }

    pub fn profile_answer(&self, answer: Answer) {
        self.with(|s| s.profile = answer);
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.with(|s| s.received.clone())
    }

    /// Requests to the token endpoint so far.
    pub fn token_requests(&self) -> usize {
        self.with(|s| s.received.iter().filter(|r| r.path == "/token").count())
    }

    /// Every token [`Answer::Tokens`] issued (for canary scans).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }
}

async fn handle(State(p): State<HostileProvider>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\n"));
    }
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let whole = format!("{body}\n{head}");
    p.with(|s| s.received.push(Received { path: path.clone(), headers: headers.clone(), body }));
    match path.as_str() {
        "/token" => {
            let answer = p.with(|s| if s.token.len() > 1 { s.token.pop_front() } else { s.token.front().cloned() });
            respond(&p, answer.unwrap_or(Answer::Tokens), &whole)
        }
        "/profile" => {
            let answer = p.with(|s| s.profile.clone());
            respond(&p, answer, &whole)
        }
        "/authorize" => {
            let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
            let mut to = url::Url::parse(&redirect_uri).expect("redirect_uri");
            let code = format!("hcode-{}", unique());
            to.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", query.get("state").map_or("", String::as_str));
            Response::builder().status(302).header("location", to.as_str()).body(Body::empty()).expect("response")
        }
        "/revoke" => Response::builder().status(200).body(Body::empty()).expect("response"),
        _ => {
            let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
            json_response(200, &json!({"ok": true, "authorization": auth}))
        }
    }
}

fn respond(p: &HostileProvider, answer: Answer, whole: &str) -> Response {
    match answer {
        Answer::Tokens => {
            let (access, refresh) = p.with(|s| {
                s.counter += 1;
                let n = s.counter;
                let pair = (format!("hat-{n}-{}", unique()), format!("hrt-{n}-{}", unique()));
                s.issued.push(pair.0.clone());
                s.issued.push(pair.1.clone());
                pair
            });
            json_response(
                200,
                &json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh}),
            )
        }
        Answer::Json(status, v) => json_response(status, &v),
        Answer::Echo { status, error, place } => {
            let pad = place
                .and_then(|(needle, at)| Some(at.saturating_sub(whole[..whole.find(&needle)?].chars().count())))
                .unwrap_or(0);
            let description = format!("{}{whole}", "x".repeat(pad));
            json_response(status, &json!({"error": error, "error_description": description}))
        }
        Answer::Huge { status, len, content_length } => {
            let head = br#"{"token_type":"Bearer","expires_in":3600,"access_token":""#;
            let tail = br#""}"#;
            let filler = len.saturating_sub(head.len() + tail.len());
            const CHUNK: usize = 64 * 1024;
            let mut chunks: Vec<Bytes> = vec![Bytes::from_static(head)];
            let mut left = filler;
            while left > 0 {
                let n = left.min(CHUNK);
                chunks.push(Bytes::from(vec![b'a'; n]));
                left -= n;
            }
            chunks.push(Bytes::from_static(tail));
            let total: usize = chunks.iter().map(Bytes::len).sum();
            let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
            let mut builder = Response::builder().status(status).header("content-type", "application/json");
            if content_length {
                builder = builder.header("content-length", total.to_string());
            }
            builder.body(Body::from_stream(stream)).expect("response")
        }
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

#[expect(clippy::disallowed_methods, reason = "a stand-in for another system, which has its own clock")]
fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{nanos:x}{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}
