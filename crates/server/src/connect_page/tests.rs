//! The connect page through the router, on an engine over the memory store and a fake clock:
//! the link opened once, the sealed cookie, states, CSRF, expiry, escaping, headers, and the
//! values a user enters that never show again.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is the failure report")]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use latchkey_core::Env;
use latchkey_core::clock::FakeClock;
use latchkey_core::config::Config;
use latchkey_core::engine::{Engine, EngineSettings};
use latchkey_core::store::memory::MemoryStore;
use latchkey_core::store::{ConnectionFilter, KeyKind};
use latchkey_vault::{MasterKey, Vault};
use secrecy::ExposeSecret;

use crate::console::CSP;
use crate::{AppState, Audit};

const T0: i64 = 1_800_000_000_000;
const CANARY: &str = "lk-canary-connect-page-7f3a";
/// 1×1 transparent PNG.
const LOGO: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

fn config() -> String {
    format!(
        r##"
[server]
return_to_allow = ["https://app.test/"]
token_algorithm = "ES256"

[server.connect_page]
title = "Acme <Connect>"
accent_color = "#aa3300"
logo_url = "{LOGO}"

[connectors.gh]
base_url = "https://api.gh.test"
auth = {{ method = "oauth2_authorization_code", authorize_url = "https://gh.test/authorize", token_url = "http://127.0.0.1:9/token", client_id = "gh-client", client_secret = {{ secret = "gh_secret" }} }}
connect = {{ label = "GitHub" }}

[connectors.mine]
base_url = "https://api.mine.test"
per_user = true
auth = {{ method = "api_key_header", name = "X-Key" }}
connect = {{ label = "Mine <b>bold</b>", help = "Your key is under <Settings>.", help_url = "https://mine.test/keys?a=1&b=2" }}

[connectors.login]
base_url = "https://api.login.test"
per_user = true
auth = {{ method = "basic" }}

[connectors.plain]
base_url = "https://api.plain.test"
auth = {{ method = "api_key_header", name = "X-Key", key = {{ secret = "plain_key" }} }}
"##
    )
}

struct Page {
    router: axum::Router,
    engine: Arc<Engine>,
    clock: Arc<FakeClock>,
    app_key: String,
    audit: tempfile::NamedTempFile,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie(name).map(|c| c.split(';').next().unwrap().split_once('=').unwrap().1.to_owned())
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
    }

    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }

    fn is_html_with_headers(&self) {
        let h = |n: &str| self.headers.get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert_eq!(h("content-security-policy"), CSP, "{:?}", self.headers);
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert_eq!(h("cache-control"), "no-store");
        assert_eq!(h("x-content-type-options"), "nosniff");
        if !self.status.is_redirection() {
            assert!(h("content-type").starts_with("text/html"), "{}: {}", h("content-type"), self.body);
        }
    }
}

fn enc(v: &str) -> String {
    crate::console::enc(v)
}

impl Page {
    async fn start() -> Page {
        let clock = FakeClock::at(T0);
        let settings = EngineSettings {
            config: Config::parse(&config(), "test.toml").unwrap(),
            public_url: "https://lk.example.com".into(),
            clock: Some(clock.clone()),
            ..Default::default()
        };
        let vault = Arc::new(Vault::new(&MasterKey::generate()));
        let store = MemoryStore::new();
        let engine = Engine::start(Arc::new(store), vault, settings).await.unwrap();
        engine.admin().put_secret("gh_secret", Env::Live, &secrecy::SecretString::from("gh-secret")).await.unwrap();
        let app = engine.admin().create_key(KeyKind::App(Env::Live), "app").await.unwrap();
        let audit = tempfile::NamedTempFile::new().unwrap();
        let log = Audit::open(audit.path(), engine.audit_key().await.unwrap()).unwrap();
        let router = crate::router(AppState::new(engine.clone()).with_audit(log));
        Page { router, engine, clock, app_key: app.key.expose_secret().to_owned(), audit }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let response = tower_service::Service::call(&mut self.router.clone(), req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    async fn api(&self, path: &str, body: serde_json::Value) -> Answer {
        let req = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.app_key))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// A link for alice to `connectors`.
    async fn link(&self, connectors: &[&str]) -> String {
        let a = self
            .api(
                "/v1/connect",
                serde_json::json!({"user": "alice", "connectors": connectors, "return_to": "https://app.test/back"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        let url = v["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with("https://lk.example.com/connect?session="), "{url}");
        url.trim_start_matches("https://lk.example.com").to_owned()
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, format!("lk_connect={c}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: &str, body: String) -> Answer {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("lk_connect={cookie}"))
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// Opens a link for `connectors`: the session cookie.
    async fn open(&self, connectors: &[&str]) -> String {
        let link = self.link(connectors).await;
        let a = self.get(&link, None).await;
        assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/connect"), "{}", a.body);
        a.cookie("lk_connect").unwrap()
    }

    fn audit_log(&self) -> String {
        std::fs::read_to_string(self.audit.path()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_link_opens_once_into_a_sealed_cookie_and_lists_the_connectors_and_their_states() {
    let p = Page::start().await;
    let link = p.link(&["gh", "mine", "login"]).await;
    let first = p.get(&link, None).await;
    first.is_html_with_headers();
    assert_eq!((first.status, first.location()), (StatusCode::SEE_OTHER, "/connect"));
    let set = first.set_cookie("lk_connect").unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/connect", "Secure", "Max-Age=900"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("alice"), "the session is sealed: {set}");
    let cookie = first.cookie("lk_connect").unwrap();

    // The same link again (a stolen copy): refused, as a page.
    let again = p.get(&link, None).await;
    again.is_html_with_headers();
    assert_eq!(again.status, StatusCode::GONE, "{}", again.body);
    assert!(again.body.contains("used already"), "{}", again.body);
    assert!(again.set_cookie("lk_connect").is_none());

    let page = p.get("/connect", Some(&cookie)).await;
    page.is_html_with_headers();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Acme &lt;Connect&gt;"), "the title, escaped: {}", page.body);
    assert!(page.body.contains("GitHub") && page.body.contains("Not connected"), "{}", page.body);
    assert!(page.body.contains("href=\"/connect/gh/start?csrf="), "{}", page.body);
    assert!(page.body.contains("action=\"/connect/mine\"") && page.body.contains("name=\"key\""), "{}", page.body);
    assert!(page.body.contains("name=\"username\"") && page.body.contains("name=\"password\""), "{}", page.body);
    assert!(page.body.contains("src=\"/connect/logo\""), "{}", page.body);
    assert!(!page.body.contains("c-plain"), "only the connectors asked for: {}", page.body);
    // The configuration's words are escaped.
    assert!(page.body.contains("Mine &lt;b&gt;bold&lt;/b&gt;"), "{}", page.body);
    assert!(page.body.contains("under &lt;Settings&gt;."), "{}", page.body);
    assert!(page.body.contains("href=\"https://mine.test/keys?a=1&amp;b=2\""), "{}", page.body);
    assert!(!page.body.contains("<b>"), "{}", page.body);
    assert!(!page.body.contains("<script"), "no script: {}", page.body);

    // A tampered cookie is no session.
    let mut bad = cookie.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let a = p.get("/connect", Some(&String::from_utf8(bad).unwrap())).await;
    a.is_html_with_headers();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // No cookie, no session.
    assert_eq!(p.get("/connect", None).await.status, StatusCode::UNAUTHORIZED);
    // An unknown link.
    let a = p.get("/connect?session=nope", None).await;
    assert_eq!(a.status, StatusCode::GONE, "{}", a.body);
    assert!(a.body.contains("not valid"), "{}", a.body);
}

#[tokio::test(start_paused = true)]
async fn values_saved_from_the_form_need_the_sessions_csrf_and_never_show_again() {
    let p = Page::start().await;
    let cookie = p.open(&["mine", "gh"]).await;
    let page = p.get("/connect", Some(&cookie)).await;
    let csrf = page.csrf();
    let stored = || async {
        let filter = ConnectionFilter { connector: None, env: Some(Env::Live), owner: Some("alice".into()) };
        p.engine.connections().views(&filter).await.unwrap().len()
    };

    // Without the token, or with another: refused, nothing stored.
    for body in [format!("key={CANARY}"), format!("csrf=wrong&key={CANARY}")] {
        let a = p.post("/connect/mine", &cookie, body).await;
        a.is_html_with_headers();
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(!a.body.contains(CANARY));
    }
    assert_eq!(stored().await, 0);

    // Values the method refuses: the page again, saying why, without the value.
    let bad = format!("{CANARY}\u{1}");
    let a = p.post("/connect/mine", &cookie, format!("csrf={}&key={}", enc(&csrf), enc(&bad))).await;
    a.is_html_with_headers();
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("Not saved"), "{}", a.body);
    assert!(a.body.contains("aria-invalid=\"true\""), "{}", a.body);
    assert!(!a.body.contains(CANARY), "the value is not written back: {}", a.body);
    // A field the method does not take.
    let a = p.post("/connect/mine", &cookie, format!("csrf={}&password={CANARY}", enc(&csrf))).await;
    assert!(a.status.is_client_error(), "{}", a.body);
    assert!(!a.body.contains(CANARY), "{}", a.body);
    assert_eq!(stored().await, 0);

    // A connector not on this page, or one connected through a login: refused.
    for path in ["/connect/login", "/connect/gh", "/connect/plain"] {
        let a = p.post(path, &cookie, format!("csrf={}&key={CANARY}", enc(&csrf))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
    }

    let a = p.post("/connect/mine", &cookie, format!("csrf={}&key={CANARY}", enc(&csrf))).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/connect?saved=mine"), "{}", a.body);
    assert_eq!(stored().await, 1);
    let page = p.get("/connect?saved=mine", Some(&cookie)).await;
    assert!(page.body.contains("Saved: mine is connected."), "{}", page.body);
    assert!(page.body.contains("(Connected)"), "{}", page.body);
    assert!(page.body.contains(">Replace<"), "{}", page.body);
    assert!(!page.body.contains(CANARY), "{}", page.body);
    let log = p.audit_log();
    assert!(log.contains("\"kind\":\"connection.put\"") && log.contains("connect page"), "{log}");
    assert!(!log.contains(CANARY) && !log.contains("alice"), "{log}");

    // Done: back to the app, the cookie cleared; a done link without the token is refused.
    assert_eq!(p.get("/connect/done?csrf=nope", Some(&cookie)).await.status, StatusCode::FORBIDDEN);
    let a = p.get(&format!("/connect/done?csrf={}", enc(&csrf)), Some(&cookie)).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "https://app.test/back?status=done"));
    assert_eq!(a.cookie("lk_connect").as_deref(), Some(""));
}

#[tokio::test(start_paused = true)]
async fn an_oauth_connector_starts_its_login_from_the_page_and_comes_back_to_it() {
    let p = Page::start().await;
    let cookie = p.open(&["gh", "mine"]).await;
    let csrf = p.get("/connect", Some(&cookie)).await.csrf();
    assert_eq!(p.get("/connect/gh/start?csrf=nope", Some(&cookie)).await.status, StatusCode::FORBIDDEN);
    let a = p.get("/connect/mine/start?csrf=".to_owned().as_str(), Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = p.get(&format!("/connect/mine/start?csrf={}", enc(&csrf)), Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let a = p.get(&format!("/connect/gh/start?csrf={}", enc(&csrf)), Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.body);
    assert!(a.location().starts_with("https://gh.test/authorize?"), "{}", a.location());
    let flow = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(flow.starts_with("lkflow_") && flow.contains("Path=/oauth"), "the flow is bound to this browser: {flow}");
    // The provider's answer comes back to the page, which shows it.
    let back = p.get("/connect?status=error&error=access_denied", Some(&cookie)).await;
    assert!(back.body.contains("did not complete (access_denied)"), "{}", back.body);
}

#[tokio::test(start_paused = true)]
async fn the_link_and_the_session_expire_after_15_minutes() {
    let p = Page::start().await;
    let link = p.link(&["mine"]).await;
    let cookie = p.open(&["mine"]).await;
    p.clock.advance(15 * 60 * 1000 + 1);
    let a = p.get(&link, None).await;
    assert_eq!(a.status, StatusCode::GONE, "{}", a.body);
    assert!(a.body.contains("expired"), "{}", a.body);
    let a = p.get("/connect", Some(&cookie)).await;
    a.is_html_with_headers();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(a.body.contains("has ended"), "{}", a.body);
}

#[tokio::test(start_paused = true)]
async fn links_for_one_connector_and_for_several() {
    let p = Page::start().await;
    // One OAuth connector: straight to the provider, as before.
    let a = p.api("/v1/connect/gh", serde_json::json!({"user": "alice", "return_to": "https://app.test/back"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body.contains("/oauth/gh/start?session="), "{}", a.body);
    // One per-user connector: the page.
    let a = p.api("/v1/connect/mine", serde_json::json!({"user": "alice", "return_to": "https://app.test/back"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body.contains("https://lk.example.com/connect?session="), "{}", a.body);
    assert!(a.body.contains("expires_at"), "{}", a.body);
    // Refusals name what is wrong.
    for (body, says) in [
        (
            serde_json::json!({"user": "alice", "connectors": ["plain"], "return_to": "https://app.test/back"}),
            "no per-user connections",
        ),
        (
            serde_json::json!({"user": "alice", "connectors": ["nope"], "return_to": "https://app.test/back"}),
            "no connector named `nope`",
        ),
        (serde_json::json!({"user": "alice", "connectors": [], "return_to": "https://app.test/back"}), "1 to 20"),
        (
            serde_json::json!({"user": "alice", "connectors": ["mine", "mine"], "return_to": "https://app.test/back"}),
            "twice",
        ),
        (
            serde_json::json!({"user": "alice", "connectors": ["mine"], "return_to": "https://evil.test/"}),
            "return_to_allow",
        ),
        (serde_json::json!({"user": "", "connectors": ["mine"], "return_to": "https://app.test/back"}), "`user`"),
        (serde_json::json!({"user": "alice", "connectors": ["mine"]}), "the body must be JSON"),
    ] {
        let a = p.api("/v1/connect", body.clone()).await;
        assert!(a.status.is_client_error(), "{body}: {}", a.body);
        assert!(a.body.contains(says), "{body}: {}", a.body);
        assert!(a.headers.get("content-type").unwrap().to_str().unwrap().starts_with("application/json"));
    }
    // Without an app key: 401.
    let req =
        Request::post("/v1/connect").header(header::CONTENT_TYPE, "application/json").body(Body::from("{}")).unwrap();
    assert_eq!(p.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn branding_is_served_from_this_origin() {
    let p = Page::start().await;
    let css = p.get("/connect/style.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/css"));
    assert!(css.body.trim_end().ends_with(":root { --accent: #aa3300; }"), "{}", css.body);
    let logo = p.get("/connect/logo", None).await;
    assert_eq!(logo.status, StatusCode::OK);
    assert_eq!(logo.headers.get("content-type").unwrap(), "image/png");
    assert_eq!(logo.headers.get("content-security-policy").unwrap(), CSP);
    let a = p.get("/connect/nothing", None).await;
    a.is_html_with_headers();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn every_listed_connect_page_route_is_served_and_none_is_the_json_apis() {
    let p = Page::start().await;
    for (path, methods) in super::ROUTES {
        let path = path.replace("{connector}", "mine");
        for m in *methods {
            let req = Request::builder().method(m.to_uppercase().as_str()).uri(&path).body(Body::empty()).unwrap();
            let a = p.send(req).await;
            assert!(
                a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path}: {}",
                a.status
            );
        }
    }
    assert!(super::ROUTES.iter().all(|(p, _)| p.starts_with("/connect")));
    assert!(crate::ROUTES.iter().all(|(p, _)| !p.starts_with("/connect")));
}

#[tokio::test(start_paused = true)]
async fn a_bad_oauth_link_is_a_page_for_a_browser_and_json_for_a_program() {
    let p = Page::start().await;
    let a = p.api("/v1/connect/gh", serde_json::json!({"user": "alice", "return_to": "https://app.test/back"})).await;
    let url: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let path = url["url"].as_str().unwrap().trim_start_matches("https://lk.example.com").to_owned();
    assert_eq!(p.get(&path, None).await.status, StatusCode::FOUND);
    let browser = Request::get(&path).header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8");
    // Spent: back to the app, which hears why (as before).
    let a = p.send(browser.body(Body::empty()).unwrap()).await;
    assert_eq!((a.status, a.location()), (StatusCode::FOUND, "https://app.test/back?status=error&error=session_used"));
    // Nowhere to send it back: a page.
    let a =
        p.send(Request::get("/oauth/gh/start").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap()).await;
    a.is_html_with_headers();
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("has no `session`"), "{}", a.body);
    let a = p
        .send(
            Request::get("/oauth/gh/start?session=nope")
                .header(header::ACCEPT, "text/html")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    a.is_html_with_headers();
    assert!(a.body.contains("not valid"), "{}", a.body);
    // A program gets the JSON error, as before.
    let a = p.get("/oauth/gh/start?session=nope", None).await;
    assert!(a.headers.get("content-type").unwrap().to_str().unwrap().starts_with("application/json"), "{}", a.body);
}
