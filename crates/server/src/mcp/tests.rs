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
    let _ = &m.clock;
}
