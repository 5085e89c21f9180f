//! An in-process OAuth provider for fault injection: a token endpoint that follows a script
//! (errors, hangs, Retry-After), rotates refresh tokens on every use and refuses reuse, and a
//! protected resource that accepts only the access tokens it issued and has not revoked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

/// What the token endpoint does with one request.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Issue tokens.
    Ok,
    /// Answer with this status and OAuth `error` code.
    Error(u16, &'static str),
    /// Answer 429 with `Retry-After: secs`.
    RetryAfter(u64),
    /// Wait this many milliseconds, then issue tokens (a client with a shorter timeout sees a
    /// timeout).
    Slow(u64),
}

/// One token request as received.
#[derive(Debug, Clone)]
pub struct TokenCall {
    pub form: HashMap<String, String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl TokenCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn grant(&self) -> &str {
        self.form.get("grant_type").map_or("", String::as_str)
    }
}

struct State_ {
    script: VecDeque<Step>,
    delay: Duration,
    expires_in: i64,
    issue_refresh: bool,
    counter: u64,
    current_refresh: Option<String>,
    /// Per-grant lineages (`set_lineages`): the current refresh token of each, by number.
    lineages: Option<HashMap<u64, String>>,
    valid_access: HashSet<String>,
    calls: Vec<TokenCall>,
    reuse: u64,
    resource_calls: u64,
    issued: Vec<String>,
    /// Authorization codes issued by `/authorize`: code -> (redirect_uri, code_challenge,
    /// whether the login URL carried the `offline_only` parameter).
    codes: HashMap<String, (String, Option<String>, bool)>,
    form_response: bool,
    /// Like Google: a code exchange answers a refresh token only when the login URL carried
    /// this parameter with this value (`access_type=offline`).
    offline_only: Option<(String, String)>,
    /// Whether a refresh answers a new refresh token (and retires the one presented); when
    /// not, the one presented stays good (HubSpot, Google).
    rotate: bool,
}

#[derive(Clone)]
pub struct FakeOAuth {
    pub base_url: String,
    pub token_url: String,
    state: Arc<Mutex<State_>>,
}

impl FakeOAuth {
    pub async fn start() -> FakeOAuth {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake oauth");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = FakeOAuth {
            token_url: format!("{base_url}/token"),
            base_url,
            state: Arc::new(Mutex::new(State_ {
                script: VecDeque::new(),
                delay: Duration::ZERO,
                expires_in: 3600,
                issue_refresh: true,
                counter: 0,
                current_refresh: None,
                lineages: None,
                valid_access: HashSet::new(),
                calls: Vec::new(),
                reuse: 0,
                resource_calls: 0,
                issued: Vec::new(),
                codes: HashMap::new(),
                form_response: false,
                offline_only: None,
                rotate: true,
            })),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut State_) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The next token requests follow these steps; after them, `Step::Ok`.
    pub fn script(&self, steps: &[Step]) {
        self.with(|s| s.script.extend(steps.iter().cloned()));
    }
    /// Every token request waits this long first.
    pub fn set_delay(&self, d: Duration) {
        self.with(|s| s.delay = d);
    }
    pub fn set_expires_in(&self, secs: i64) {
        self.with(|s| s.expires_in = secs);
    }
    pub fn set_issue_refresh(&self, on: bool) {
        self.with(|s| s.issue_refresh = on);
    }
    /// Every grant other than `refresh_token` starts a lineage of its own, numbered from 1 in
    /// the order of the grants; its tokens read `at-L<n>-…` and `rt-L<n>-…`, and a refresh
    /// continues the lineage of the refresh token presented, which must be that lineage's
    /// newest (else `invalid_grant`, counted as a reuse). Without this there is one lineage:
    /// any grant replaces the current refresh token.
    pub fn set_lineages(&self) {
        self.with(|s| s.lineages = Some(HashMap::new()));
    }
    /// The resource stops accepting every access token issued so far (they "expired").
    pub fn expire_access_tokens(&self) {
        self.with(|s| s.valid_access.clear());
    }
    pub fn calls(&self) -> Vec<TokenCall> {
        self.with(|s| s.calls.clone())
    }
    pub fn token_requests(&self) -> usize {
        self.with(|s| s.calls.len())
    }
    /// Refresh requests that presented a refresh token that was already used.
    pub fn reused_refresh_tokens(&self) -> u64 {
        self.with(|s| s.reuse)
    }
    pub fn current_refresh_token(&self) -> Option<String> {
        self.with(|s| s.current_refresh.clone())
    }
    /// Token responses as `application/x-www-form-urlencoded` instead of JSON.
    pub fn set_form_response(&self, on: bool) {
        self.with(|s| s.form_response = on);
    }
    /// A code exchange answers a refresh token only when the login URL carried `name=value`
    /// (as Google does with `access_type=offline`).
    pub fn set_refresh_only_with(&self, name: &str, value: &str) {
        self.with(|s| s.offline_only = Some((name.to_owned(), value.to_owned())));
    }
    /// `false`: a refresh answers no new refresh token, and the one presented stays good.
    pub fn set_rotate(&self, on: bool) {
        self.with(|s| s.rotate = on);
    }
    /// Every access and refresh token issued so far (for canary scans).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }
    pub fn resource_calls(&self) -> u64 {
        self.with(|s| s.resource_calls)
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

async fn handle(State(fake): State<FakeOAuth>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    if path == "/token" {
        return token(&fake, headers, body).await;
    }
    if path.ends_with("/authorize") {
        return authorize(&fake, &query);
    }
    // The protected resource: the token in the header or in `?access_token=`.
    let bearer = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| query.get("access_token").cloned());
    if path == "/profile" {
        let ok = fake.with(|s| bearer.as_ref().is_some_and(|b| s.valid_access.contains(b)));
        return if ok {
            json_response(200, &json!({"data": {"user": {"id": 4242, "mail": "ada@example.com"}}}))
        } else {
            json_response(401, &json!({"error": "invalid_token"}))
        };
    }
    let ok = fake.with(|s| {
        s.resource_calls += 1;
        bearer.as_ref().is_some_and(|b| s.valid_access.contains(b))
    });
    if path.ends_with("/always-401") {
        // A path that refuses every token (missing scope, or a hostile caller's choice).
        return json_response(401, &json!({"error": "invalid_token"}));
    }
    if ok {
        json_response(200, &json!({"ok": true, "token": bearer, "path": path}))
    } else if path.ends_with("/ok-false") {
        // Slack's way: 200, and the error in the body.
        json_response(200, &json!({"ok": false, "error": "token_expired"}))
    } else if path.ends_with("/soft-expiry") {
        // A non-standard expiry signal: 403 with a message in the body.
        json_response(403, &json!({"message": "token expired, please renew"}))
    } else {
        json_response(401, &json!({"error": "invalid_token"}))
    }
}

/// Approves at once: back to `redirect_uri` with a code and the `state`.
fn authorize(fake: &FakeOAuth, q: &HashMap<String, String>) -> Response {
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let code = format!("code-{}", latchkey_like_random());
    fake.with(|s| {
        let offline = s.offline_only.as_ref().is_none_or(|(k, v)| q.get(k) == Some(v));
        s.codes.insert(code.clone(), (redirect_uri.clone(), q.get("code_challenge").cloned(), offline))
    });
    let mut to = url::Url::parse(&redirect_uri).expect("redirect_uri");
    to.query_pairs_mut().append_pair("code", &code).append_pair("state", q.get("state").map_or("", String::as_str));
    Response::builder().status(302).header("location", to.as_str()).body(Body::empty()).expect("response")
}

fn sha256_b64url(input: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(latchkey_vault::sha256(input.as_bytes()))
}

async fn token(fake: &FakeOAuth, headers: Vec<(String, String)>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let (step, delay) = fake.with(|s| {
        s.calls.push(TokenCall { form: form.clone(), headers, body: body.clone() });
        (s.script.pop_front().unwrap_or(Step::Ok), s.delay)
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match step {
        Step::Error(status, error) => {
            return json_response(status, &json!({"error": error, "error_description": format!("scripted {error}")}));
        }
        Step::RetryAfter(secs) => {
            return Response::builder()
                .status(429)
                .header("retry-after", secs.to_string())
                .body(Body::from("{\"error\":\"slow_down\"}"))
                .expect("response");
        }
        Step::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Step::Ok => {}
    }
    fake.with(|s| {
        let mut offline = true;
        if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some((redirect_uri, challenge, with_offline)) = s.codes.remove(&code) else {
                return json_response(
                    400,
                    &json!({"error": "invalid_grant", "error_description": "unknown or used code"}),
                );
            };
            if form.get("redirect_uri") != Some(&redirect_uri) {
                return json_response(
                    400,
                    &json!({"error": "invalid_grant", "error_description": "redirect_uri mismatch"}),
                );
            }
            let verified = match (&challenge, form.get("code_verifier")) {
                (Some(ch), Some(v)) => &sha256_b64url(v) == ch,
                (None, None) => true,
                _ => false,
            };
            if !verified {
                return json_response(
                    400,
                    &json!({"error": "invalid_grant", "error_description": "PKCE verification failed"}),
                );
            }
            offline = with_offline;
        }
        let is_refresh = form.get("grant_type").map(String::as_str) == Some("refresh_token");
        let lineage = match s.lineages.as_ref() {
            None => None,
            Some(lines) if is_refresh => {
                let presented = form.get("refresh_token").cloned().unwrap_or_default();
                let n = presented.strip_prefix("rt-L").and_then(|r| r.split('-').next()?.parse::<u64>().ok());
                match n.filter(|n| lines.get(n) == Some(&presented)) {
                    Some(n) => Some(n),
                    None => {
                        s.reuse += 1;
                        return json_response(
                            400,
                            &json!({"error": "invalid_grant", "error_description": "refresh token already used"}),
                        );
                    }
                }
            }
            Some(lines) => Some(lines.len() as u64 + 1),
        };
        if lineage.is_none() && is_refresh {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if s.current_refresh.as_deref() != Some(presented.as_str()) {
                s.reuse += 1;
                return json_response(
                    400,
                    &json!({"error": "invalid_grant", "error_description": "refresh token already used"}),
                );
            }
        }
        s.counter += 1;
        let line = lineage.map_or_else(String::new, |n| format!("L{n}-"));
        let access = format!("at-{line}{}-{}", s.counter, latchkey_like_random());
        s.valid_access.insert(access.clone());
        s.issued.push(access.clone());
        let mut out =
            json!({"access_token": access, "token_type": "Bearer", "expires_in": s.expires_in, "scope": "read"});
        if s.issue_refresh && offline && (s.rotate || !is_refresh) {
            let refresh = format!("rt-{line}{}-{}", s.counter, latchkey_like_random());
            s.current_refresh = Some(refresh.clone());
            if let (Some(lines), Some(n)) = (s.lineages.as_mut(), lineage) {
                lines.insert(n, refresh.clone());
            }
            s.issued.push(refresh.clone());
            out["refresh_token"] = Value::String(refresh);
        }
        if s.form_response {
            let form: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(out.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), latchkey_text(v))))
                .finish();
            return Response::builder()
                .status(200)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .expect("response");
        }
        json_response(200, &out)
    })
}

#[expect(clippy::disallowed_methods, reason = "a stand-in for another system, which has its own clock")]
fn latchkey_like_random() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}", n ^ 0x5bd1_e995)
}

fn latchkey_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
