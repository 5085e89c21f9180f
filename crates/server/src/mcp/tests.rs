//! `/mcp` through the router, on an engine over the memory store and a fake clock: tools
//! narrowed by a token's scope, the session id, and URL-mode elicitation of the connect link.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is the failure report")]

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use latchkey_core::Env;
use latchkey_core::clock::FakeClock;
use latchkey_core::config::Config;
use latchkey_core::engine::{Engine, EngineSettings};
use latchkey_core::store::KeyKind;
use latchkey_core::store::memory::MemoryStore;
use latchkey_vault::{MasterKey, Vault};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::{AppState, Audit};

const T0: i64 = 1_800_000_000_000;

const CONFIG: &str = r#"
[server]
return_to_allow = ["https://app.test/back"]

[connectors.gh]
base_url = "https://api.gh.test"
mcp = true
auth = { method = "oauth2_authorization_code", authorize_url = "https://gh.test/authorize", token_url = "http://127.0.0.1:9/token", client_id = "gh-client", client_secret = { secret = "gh_secret" } }
[connectors.gh.calls.repos]
path = "/user/repos"
access = "user"
tool_name = "github_repos"
[connectors.gh.calls.issues]
path = "/issues"
access = "user"

[connectors.notes]
base_url = "http://127.0.0.1:9"
per_user = true
auth = { method = "api_key_header", name = "X-Key" }
[connectors.notes.calls.list]
path = "/notes"
access = "user"
mcp = true
"#;

struct Mcp {
    router: axum::Router,
    engine: Arc<Engine>,
    clock: Arc<FakeClock>,
    app_key: String,
    _audit: tempfile::NamedTempFile,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Mcp {
    async fn start() -> Mcp {
        let clock = FakeClock::at(T0);
        let settings = EngineSettings {
            config: Config::parse(CONFIG, "test.toml").unwrap(),
            public_url: "https://lk.example.com".into(),
            clock: Some(clock.clone()),
            ..Default::default()
        };
        let vault = Arc::new(Vault::new(&MasterKey::generate()));
        let engine = Engine::start(Arc::new(MemoryStore::new()), vault, settings).await.unwrap();
        engine.admin().put_secret("gh_secret", Env::Live, &secrecy::SecretString::from("gh-secret")).await.unwrap();
        engine.identity().ensure_signing_key().await.unwrap();
        let app = engine.admin().create_key(KeyKind::App(Env::Live), "app").await.unwrap();
        let audit = tempfile::NamedTempFile::new().unwrap();
        let log = Audit::open(audit.path(), engine.audit_key().await.unwrap()).unwrap();
        let router = crate::router(AppState::new(engine.clone()).with_audit(log));
        Mcp { router, engine, clock, app_key: app.key.expose_secret().to_owned(), _audit: audit }
    }

    /// A user token for alice, with `scope` when given.
    fn token(&self, scope: Option<&str>) -> String {
        match scope {
            Some(s) => self.engine.identity().scoped_access_token(Env::Live, "alice", s).unwrap(),
            None => self.engine.identity().scoped_access_token(Env::Live, "alice", "tools").unwrap(),
        }
    }

    async fn send(&self, method: http::Method, token: &str, session: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
        let response = tower_service::Service::call(&mut self.router.clone(), req).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Answer { status: parts.status, headers: parts.headers, body }
    }

    async fn rpc(&self, token: &str, session: Option<&str>, method: &str, params: Value) -> Answer {
        self.send(
            http::Method::POST,
            token,
            session,
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})),
        )
        .await
    }

    async fn tool_names(&self, token: &str) -> Vec<String> {
        let a = self.rpc(token, None, "tools/list", json!({})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }
}

#[tokio::test]
async fn a_tokens_scope_narrows_the_tools_it_sees_and_may_call() {
    let m = Mcp::start().await;
    let all = ["gh.issues", "github_repos", "notes.list"];
    // A token minted the usual way has no scope: every user tool.
    m.engine.identity().upsert_user(Env::Live, "alice", None, Value::Null).await.unwrap();
    let unscoped = m.engine.identity().mint_tokens(Env::Live, "alice").await.unwrap();
    assert_eq!(m.tool_names(&unscoped.access_token).await, all);
    assert_eq!(m.tool_names(&m.token(Some("tools"))).await, all);
    assert_eq!(m.tool_names(&m.token(Some("openid connector:gh"))).await, ["gh.issues", "github_repos"]);
    assert_eq!(m.tool_names(&m.token(Some("tool:notes.list tool:github_repos"))).await, ["github_repos", "notes.list"]);
    assert!(m.tool_names(&m.token(Some("openid profile"))).await.is_empty());

    // A tool outside the scope is refused exactly as a tool that does not exist.
    let narrow = m.token(Some("connector:notes"));
    let hidden = m.rpc(&narrow, None, "tools/call", json!({"name": "github_repos", "arguments": {}})).await;
    let missing = m.rpc(&narrow, None, "tools/call", json!({"name": "github_nothing", "arguments": {}})).await;
    assert_eq!(hidden.status, StatusCode::OK);
    assert_eq!(hidden.body["error"]["code"], -32602, "{}", hidden.body);
    assert_eq!(
        hidden.body["error"]["message"].as_str().unwrap().replace("github_repos", "X"),
        missing.body["error"]["message"].as_str().unwrap().replace("github_nothing", "X"),
    );
    // Within the scope the tool runs (alice has no connection: the connect link).
    let inside = m.rpc(&narrow, None, "tools/call", json!({"name": "notes.list", "arguments": {}})).await;
    assert_eq!(inside.body["result"]["isError"], true, "{}", inside.body);
    assert!(inside.body["result"]["content"][0]["text"].as_str().unwrap().contains("not connected `notes`"));
    // App keys carry no scope: their own tools, unnarrowed (none here: every tool is per-user).
    assert!(m.tool_names(&m.app_key.clone()).await.is_empty());
}

impl Mcp {
    /// `initialize` with `capabilities`; the session id answered.
    async fn initialize(&self, token: &str, version: &str, capabilities: Value) -> String {
        let a = self
            .rpc(
                token,
                None,
                "initialize",
                json!({"protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["result"]["protocolVersion"], version);
        let id = a.headers.get("mcp-session-id").expect("a session id").to_str().unwrap().to_owned();
        // Visible ASCII (the transport's rule), and nothing readable in it.
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)) && id.len() < 400, "{id}");
        assert!(!id.contains("alice") && !id.contains("2025"), "{id}");
        id
    }

    async fn call_repos(&self, token: &str, session: Option<&str>) -> Answer {
        self.rpc(token, session, "tools/call", json!({"name": "github_repos", "arguments": {}})).await
    }
}

/// A client that declared `elicitation.url` gets the connect link as
/// `URLElicitationRequiredError`; any other gets today's tool result with `connect_url`.
#[tokio::test]
async fn a_user_without_a_connection_gets_url_elicitation_when_the_client_declared_it() {
    let m = Mcp::start().await;
    let alice = m.token(None);
    let session = m.initialize(&alice, "2025-11-25", json!({"elicitation": {"form": {}, "url": {}}})).await;
    let a = m.call_repos(&alice, Some(&session)).await;
    assert_eq!(a.status, StatusCode::OK);
    let error = &a.body["error"];
    assert_eq!(error["code"], -32042, "{}", a.body);
    assert!(error["message"].as_str().unwrap().contains("not connected `gh`"), "{error}");
    let e = &error["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url");
    assert!(e["url"].as_str().unwrap().starts_with("https://lk.example.com/oauth/gh/start?session="), "{e}");
    assert!(e["elicitationId"].as_str().unwrap().starts_with("lk_connect_"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("then call it again"), "{e}");
    assert_eq!(error["data"]["elicitations"].as_array().unwrap().len(), 1);
    // Each elicitation is its own: a new id and a new link.
    let again = m.call_repos(&alice, Some(&session)).await;
    let e2 = &again.body["error"]["data"]["elicitations"][0];
    assert_ne!((e2["elicitationId"].clone(), e2["url"].clone()), (e["elicitationId"].clone(), e["url"].clone()));
    // A notification within the session is accepted.
    let n = m
        .send(
            http::Method::POST,
            &alice,
            Some(&session),
            Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
        )
        .await;
    assert_eq!(n.status, StatusCode::ACCEPTED);

    // Form mode only (`elicitation: {}` is form mode), no capability, an older revision, or no
    // session id at all: the tool result that says what to open.
    for session in [
        Some(m.initialize(&alice, "2025-11-25", json!({"elicitation": {}})).await),
        Some(m.initialize(&alice, "2025-11-25", json!({})).await),
        Some(m.initialize(&alice, "2025-06-18", json!({"elicitation": {"url": {}}})).await),
        None,
    ] {
        let a = m.call_repos(&alice, session.as_deref()).await;
        assert!(a.body.get("error").is_none(), "{}", a.body);
        let r = &a.body["result"];
        assert_eq!(r["isError"], true);
        assert!(
            r["structuredContent"]["connect_url"]
                .as_str()
                .unwrap()
                .starts_with("https://lk.example.com/oauth/gh/start?session=")
        );
    }
}

/// A session id opens only for the caller that initialized it, within its lifetime, as this
/// install sealed it; anything else is `404` (the client initializes again).
#[tokio::test]
async fn a_session_id_of_another_caller_tampered_or_expired_is_404() {
    let m = Mcp::start().await;
    let alice = m.token(None);
    let session = m.initialize(&alice, "2025-11-25", json!({"elicitation": {"url": {}}})).await;
    // Another token of the same user (a refreshed one) is the same caller.
    let alice_again = m.token(Some("tools connector:gh"));
    assert_eq!(m.call_repos(&alice_again, Some(&session)).await.body["error"]["code"], -32042);

    let bob = m.engine.identity().scoped_access_token(Env::Live, "bob", "tools").unwrap();
    let mut tampered = session.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let console = m.engine.seal_console_session(&latchkey_core::engine::console::ConsoleSession::new(
        secrecy::SecretString::from("lk_admin_x"),
        T0,
    ));
    for (who, id) in [
        (&bob, session.as_str()),
        (&m.app_key, session.as_str()),
        (&alice, tampered.as_str()),
        (&alice, "garbage"),
        (&alice, console.as_str()),
    ] {
        let a = m.rpc(who, Some(id), "tools/list", json!({})).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{id}: {}", a.body);
        assert!(a.body["error"]["message"].as_str().unwrap().contains("initialize again"), "{}", a.body);
    }
    // Valid for a day, across the user's tokens (each lives 15 minutes).
    m.clock.advance(24 * 3600 * 1000 - 60_000);
    assert_eq!(m.rpc(&m.token(None), Some(&session), "ping", json!({})).await.status, StatusCode::OK);
    m.clock.advance(61_000);
    let alice_now = m.token(None);
    assert_eq!(m.rpc(&alice_now, Some(&session), "ping", json!({})).await.status, StatusCode::NOT_FOUND);
    // Stateless: nothing to end; DELETE (and GET: no stream) are 405.
    for method in [http::Method::DELETE, http::Method::GET] {
        let a = m.send(method.clone(), &alice_now, Some(&session), None).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(a.headers[header::ALLOW], "POST");
    }
}
