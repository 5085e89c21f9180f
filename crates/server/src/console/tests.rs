//! The console through the router, on an engine over the memory store and a fake clock:
//! sign-in, cookies, CSRF, headers, idle expiry, escaping, and secrets that never show.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is the failure report")]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use latchkey_core::clock::FakeClock;
use latchkey_core::config::Config;
use latchkey_core::engine::{Engine, EngineSettings};
use latchkey_core::store::KeyKind;
use latchkey_core::store::memory::MemoryStore;
use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};

use super::CSP;
use crate::{AppState, Audit};

const ADMIN: &str = "lk_admin_console-test-bootstrap-key";
const T0: i64 = 1_800_000_000_000;

const CONFIG: &str = r#"
[server]
return_to_allow = ["https://app.test/"]
# Quick to generate (RSA keys take a while in a debug build).
token_algorithm = "ES256"

[connectors.gh]
base_url = "https://api.gh.test"
auth = { method = "oauth2_authorization_code", authorize_url = "https://gh.test/authorize", token_url = "http://127.0.0.1:9/token", client_id = "gh-client", client_secret = { secret = "gh_secret" } }

[connectors.plain]
base_url = "https://api.plain.test"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "plain_key" } }
calls.list = { path = "/items", description = "<b onmouseover=alert(1)>items</b>" }
"#;

struct Console {
    router: axum::Router,
    engine: Arc<Engine>,
    store: MemoryStore,
    clock: Arc<FakeClock>,
    audit: tempfile::NamedTempFile,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    /// The value a `Set-Cookie` gives cookie `name` (`None`: not set).
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookie(name).map(|c| c.split(';').next().unwrap().split_once('=').unwrap().1.to_owned())
    }

    /// The whole `Set-Cookie` line for `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", super::enc(v))).collect::<Vec<_>>().join("&")
}

impl Console {
    async fn start(public_url: &str) -> Console {
        let clock = FakeClock::at(T0);
        let settings = EngineSettings {
            config: Config::parse(CONFIG, "test.toml").unwrap(),
            bootstrap_admin_key: Some(SecretString::from(ADMIN)),
            public_url: public_url.into(),
            clock: Some(clock.clone()),
            ..Default::default()
        };
        let vault = Arc::new(Vault::new(&MasterKey::generate()));
        let store = MemoryStore::new();
        let engine = Engine::start(Arc::new(store.clone()), vault, settings).await.unwrap();
        engine.identity().ensure_signing_key().await.unwrap();
        let audit = tempfile::NamedTempFile::new().unwrap();
        let log = Audit::open(audit.path(), engine.audit_key().await.unwrap()).unwrap();
        let router = crate::router(AppState::new(engine.clone()).with_audit(log));
        Console { router, engine, store, clock, audit }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let response = tower_service::Service::call(&mut self.router.clone(), req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut req = Request::get(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, format!("lk_console={s}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: &str, body: String) -> Answer {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// Signs in with `key` through the form; the whole answer.
    async fn try_sign_in(&self, key: &str) -> Answer {
        let form_page = self.get("/console", None).await;
        let token = form_page.cookie("lk_console_signin").unwrap();
        let body = form(&[("admin_key", key), ("csrf", &form_page.csrf())]);
        self.post("/console", &format!("lk_console_signin={token}"), body).await
    }

    /// A session cookie's value for `key`.
    async fn sign_in(&self, key: &str) -> String {
        let answer = self.try_sign_in(key).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        answer.cookie("lk_console").unwrap()
    }

    /// A page's CSRF token, for `session`.
    async fn csrf(&self, session: &str) -> String {
        self.get("/console/secrets", Some(session)).await.csrf()
    }

    fn audit_log(&self) -> String {
        std::fs::read_to_string(self.audit.path()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn signing_in_gives_a_strict_session_cookie_and_every_page_needs_it() {
    let c = Console::start("https://lk.example.com").await;
    let page = c.get("/console", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"admin_key\""), "{}", page.body);
    assert!(page.body.contains("type=\"password\""));
    let pre = page.set_cookie("lk_console_signin").unwrap();
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict") && pre.contains("Path=/console"), "{pre}");

    // Without a session, every page sends the browser to the sign-in form.
    for path in ["/console/connectors", "/console/secrets", "/console/keys", "/console/events", "/console/users"] {
        let a = c.get(path, None).await;
        assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console"), "{path}");
    }

    let answer = c.try_sign_in(ADMIN).await;
    assert_eq!((answer.status, answer.location()), (StatusCode::SEE_OTHER, "/console/connectors"), "{}", answer.body);
    let set = answer.set_cookie("lk_console").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Secure", "Max-Age=1800"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains(ADMIN), "the key is sealed in the cookie: {set}");
    assert_eq!(answer.cookie("lk_console_signin").as_deref(), Some(""), "the sign-in cookie is cleared");
    let session = answer.cookie("lk_console").unwrap();

    let page = c.get("/console/connectors", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("plain") && page.body.contains("missing"), "{}", page.body);
    assert!(c.audit_log().contains("\"kind\":\"console.sign_in\""), "{}", c.audit_log());
    assert!(c.audit_log().contains("\"caller\":\"bootstrap\""), "{}", c.audit_log());

    // GET /console with a session goes on to the connectors.
    assert_eq!(c.get("/console", Some(&session)).await.location(), "/console/connectors");
    // A session cookie that was tampered with is no session.
    let mut bad = session.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let a = c.get("/console/connectors", Some(&String::from_utf8(bad).unwrap())).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console?expired=1"));
}

#[tokio::test(start_paused = true)]
async fn behind_plain_http_the_cookie_is_not_secure() {
    let c = Console::start("http://127.0.0.1:8080").await;
    let set = c.try_sign_in(ADMIN).await.set_cookie("lk_console").unwrap();
    assert!(!set.contains("Secure"), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_key_is_refused_audited_and_rate_limited() {
    let c = Console::start("https://lk.example.com").await;
    let app = c.engine.admin().create_key(KeyKind::App(latchkey_core::Env::Live), "app").await.unwrap();
    for key in ["lk_admin_nope", app.key.expose_secret()] {
        let a = c.try_sign_in(key).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{key}: {}", a.body);
        assert!(a.body.contains("not an admin key"), "{}", a.body);
        assert!(a.set_cookie("lk_console").is_none());
        assert!(!a.body.contains(key), "the key presented is not echoed");
    }
    let log = c.audit_log();
    assert_eq!(log.matches("\"outcome\":\"refused\"").count(), 2, "{log}");
    assert!(!log.contains("lk_admin_nope") && !log.contains(app.key.expose_secret()), "{log}");
    // Two failures a second (in a burst): the next attempt waits, even with the right key.
    let a = c.try_sign_in(ADMIN).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.set_cookie("lk_console").is_none());
    assert!(a.body.contains("Too many failed sign-ins"), "{}", a.body);
}

#[tokio::test(start_paused = true)]
async fn forms_without_the_session_token_are_refused() {
    let c = Console::start("https://lk.example.com").await;
    // The sign-in form's own token.
    let page = c.get("/console", None).await;
    let token = page.cookie("lk_console_signin").unwrap();
    for cookie in [String::new(), format!("lk_console_signin={token}")] {
        let a = c.post("/console", &cookie, form(&[("admin_key", ADMIN), ("csrf", "forged")])).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(a.set_cookie("lk_console").is_none());
    }

    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let other = c.sign_in(ADMIN).await;
    let others_token = c.csrf(&other).await;
    for csrf in ["", "forged", others_token.as_str()] {
        let a =
            c.post("/console/secrets", &cookie, form(&[("csrf", csrf), ("name", "plain_key"), ("value", "v")])).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{csrf}: {}", a.body);
        assert!(a.body.contains("reload the page"), "{}", a.body);
        let a = c.post("/console/keys", &cookie, form(&[("csrf", csrf), ("environment", "live")])).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    assert!(c.engine.admin().list_secrets().await.unwrap().is_empty(), "nothing was saved");
    assert_eq!(c.engine.admin().list_keys().await.unwrap().len(), 0, "no key was made");
    // With the session's own token, it is.
    let csrf = c.csrf(&session).await;
    let a = c.post("/console/secrets", &cookie, form(&[("csrf", &csrf), ("name", "plain_key"), ("value", "v")])).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console/secrets?done=saved"), "{}", a.body);
}

#[tokio::test(start_paused = true)]
async fn every_console_answer_has_the_strict_headers() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let answers = [
        c.get("/console", None).await,
        c.get("/console/connectors", Some(&session)).await,
        c.get("/console/connectors", None).await,
        c.get("/console/connectors/nope", Some(&session)).await,
        c.get("/console/no-such-page", Some(&session)).await,
        c.get("/console/style.css", None).await,
    ];
    for a in &answers {
        let h = |name: &str| a.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert_eq!(h("content-security-policy"), CSP, "{}", a.status);
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert_eq!(h("cache-control"), "no-store");
        assert_eq!(h("x-content-type-options"), "nosniff");
    }
    assert!(CSP.contains("default-src 'none'") && CSP.contains("frame-ancestors 'none'") && !CSP.contains("script"));
    // Errors are pages, not JSON.
    assert_eq!(answers[3].status, StatusCode::NOT_FOUND);
    assert!(answers[3].headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(answers[3].body.contains("There is no connector named `nope`"), "{}", answers[3].body);
    assert_eq!(answers[4].status, StatusCode::NOT_FOUND);
    assert!(answers[4].body.starts_with("<!DOCTYPE html>"), "{}", answers[4].body);
    assert!(answers[5].headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    // The JSON API keeps its own headers (no console policy on it).
    let api = c.get("/healthz", None).await;
    assert!(api.headers.get("content-security-policy").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_expires_and_use_renews_it() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    // Used after 20 minutes: renewed (a new cookie), so 20 more minutes are fine.
    c.clock.advance(20 * 60 * 1000);
    let a = c.get("/console/connectors", Some(&session)).await;
    assert_eq!(a.status, StatusCode::OK);
    let renewed = a.cookie("lk_console").expect("the cookie is renewed");
    c.clock.advance(20 * 60 * 1000);
    assert_eq!(c.get("/console/connectors", Some(&renewed)).await.status, StatusCode::OK);
    // The old cookie, idle 40 minutes, is over; and the renewed one after 31 idle minutes.
    let a = c.get("/console/connectors", Some(&session)).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console?expired=1"));
    assert_eq!(a.cookie("lk_console").as_deref(), Some(""), "the expired cookie is cleared");
    c.clock.advance(31 * 60 * 1000);
    let a = c.get("/console/connectors", Some(&renewed)).await;
    assert_eq!(a.location(), "/console?expired=1");
    assert!(c.get("/console?expired=1", None).await.body.contains("Your session ended"));
}

#[tokio::test(start_paused = true)]
async fn revoking_the_admin_key_ends_its_sessions_and_signing_out_forgets_the_cookie() {
    let c = Console::start("https://lk.example.com").await;
    let admin = c.engine.admin().create_key(KeyKind::Admin, "ops").await.unwrap();
    let session = c.sign_in(admin.key.expose_secret()).await;
    assert_eq!(c.get("/console/keys", Some(&session)).await.status, StatusCode::OK);
    c.engine.admin().delete_key(&admin.row.id).await.unwrap();
    assert_eq!(c.get("/console/keys", Some(&session)).await.location(), "/console?expired=1");

    let session = c.sign_in(ADMIN).await;
    let csrf = c.csrf(&session).await;
    let a = c.post("/console/sign-out", &format!("lk_console={session}"), form(&[("csrf", &csrf)])).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console?signed_out=1"));
    let cleared = a.set_cookie("lk_console").unwrap();
    assert!(cleared.starts_with("lk_console=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert!(c.audit_log().contains("console.sign_out"));
}

#[tokio::test(start_paused = true)]
async fn hostile_names_are_escaped_everywhere() {
    let c = Console::start("https://lk.example.com").await;
    let hostile_key = "<script>alert('key')</script>";
    c.engine.admin().create_key(KeyKind::App(latchkey_core::Env::Live), hostile_key).await.unwrap();
    let hostile_user = "\"><img src=x onerror=alert(1)>";
    let attributes = serde_json::json!({"note": "</code><script>alert(2)</script>"});
    c.engine.identity().upsert_user(latchkey_core::Env::Live, hostile_user, None, attributes).await.unwrap();
    let session = c.sign_in(ADMIN).await;

    let keys = c.get("/console/keys", Some(&session)).await;
    assert!(!keys.body.contains("<script>"), "{}", keys.body);
    assert!(keys.body.contains("&lt;script&gt;alert('key')&lt;/script&gt;"), "{}", keys.body);

    let users =
        c.get(&format!("/console/users?environment=live&id={}", super::enc(hostile_user)), Some(&session)).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.body);
    assert!(!users.body.contains("<img") && !users.body.contains("<script>"), "{}", users.body);
    assert!(users.body.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{}", users.body);

    let connector = c.get("/console/connectors/plain", Some(&session)).await;
    assert!(!connector.body.contains("<b onmouseover"), "{}", connector.body);
    assert!(connector.body.contains("&lt;b onmouseover=alert(1)&gt;items&lt;/b&gt;"), "{}", connector.body);

    // A name in the path is escaped in the error page too.
    let a = c.get("/console/connectors/%3Cscript%3E", Some(&session)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.body.contains("<script>") && a.body.contains("&lt;script&gt;"), "{}", a.body);
}

#[tokio::test(start_paused = true)]
async fn a_secret_set_through_the_console_is_never_shown() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let canary = "CANARYconsole-secret-value-7f3a";
    let csrf = c.csrf(&session).await;
    let a = c
        .post(
            "/console/secrets",
            &cookie,
            form(&[("csrf", &csrf), ("name", "plain_key"), ("environment", "live"), ("value", canary)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(c.engine.connector("plain").unwrap().credential_status(latchkey_core::Env::Live), Ok(()));

    let mut seen = String::new();
    for path in [
        "/console/secrets?done=saved",
        "/console/connectors",
        "/console/connectors/plain",
        "/console/keys",
        "/console/connections",
        "/console/events",
        "/console/users",
    ] {
        let a = c.get(path, Some(&session)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        seen.push_str(&a.body);
        seen.push_str(&format!("{:?}", a.headers));
    }
    assert!(seen.contains("plain_key") && seen.contains("present"), "the secret is listed by name");
    assert!(!seen.contains(canary), "the value was shown");
    assert!(!c.audit_log().contains(canary));
    assert!(c.audit_log().contains("\"kind\":\"secret.put\""), "{}", c.audit_log());
    // The password field is empty and of type password.
    let page = c.get("/console/secrets", Some(&session)).await;
    assert!(page.body.contains("<input id=\"value\" name=\"value\" type=\"password\""), "{}", page.body);
}

#[tokio::test(start_paused = true)]
async fn every_listed_console_route_is_served() {
    let c = Console::start("https://lk.example.com").await;
    for (path, methods) in super::ROUTES {
        let path = path.replace("{name}", "plain").replace("{provider}", "openai");
        for m in *methods {
            let req = Request::builder()
                .method(m.to_uppercase().as_str())
                .uri(&path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::empty())
                .unwrap();
            let a = c.send(req).await;
            assert!(
                a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path}: {}",
                a.status
            );
        }
    }
    // And the JSON API's routes are not the console's.
    assert!(super::ROUTES.iter().all(|(p, _)| p.starts_with("/console")));
    assert!(crate::ROUTES.iter().all(|(p, _)| !p.starts_with("/console")));
}

#[tokio::test(start_paused = true)]
async fn events_filter_by_kind_and_time_and_a_bad_time_is_a_page() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let a = c
        .get("/console/events?kind=token.refreshed&since=2026-01-31T12%3A00&until=&connector=plain", Some(&session))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("<option value=\"token.refreshed\" selected>"), "{}", a.body);
    let a = c.get("/console/events?since=yesterday", Some(&session)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("must be an RFC 3339 time"), "{}", a.body);
    assert!(a.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test(start_paused = true)]
async fn connections_are_listed_escaped_reconnected_and_revoked() {
    use latchkey_core::store::{ConnectionFilter, ConnectionRow, ConnectionStore as _};
    let c = Console::start("https://lk.example.com").await;
    c.engine.admin().put_secret("gh_secret", latchkey_core::Env::Live, &SecretString::from("gh-secret")).await.unwrap();
    let owner = "<script>alert('owner')</script>";
    let row = ConnectionRow {
        id: "conn-1".into(),
        connector: "gh".into(),
        env: latchkey_core::Env::Live,
        owner: owner.into(),
        provider_user_id: None,
        email: Some("a@b.test".into()),
        scopes: None,
        metadata: "{}".into(),
        return_to: Some("https://app.test/done".into()),
        created_at: T0,
        updated_at: T0,
    };
    c.store.upsert_connection(&row).await.unwrap();
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");

    let page = c.get("/console/connections?connector=gh&environment=live", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert('owner')&lt;/script&gt;"), "{}", page.body);
    assert!(page.body.contains("a@b.test"));
    let csrf = page.csrf();

    let a = c.post("/console/connections/reconnect", &cookie, form(&[("csrf", &csrf), ("id", "conn-1")])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("https://lk.example.com/oauth/gh/start?session="), "{}", a.body);

    let a = c.post("/console/connections/revoke", &cookie, form(&[("csrf", &csrf), ("id", "conn-1")])).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console/connections?done=revoked"), "{}", a.body);
    let left = c.store.list_connections(&ConnectionFilter::default()).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(c.audit_log().contains("\"kind\":\"connection.delete\""), "{}", c.audit_log());
    assert!(!c.audit_log().contains("alert('owner')"), "the user id is hashed in the audit log");
    let a = c.post("/console/connections/revoke", &cookie, form(&[("csrf", &csrf), ("id", "conn-1")])).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

// ---- New connector: the catalog, a template's form, a blank connector ----

#[tokio::test(start_paused = true)]
async fn the_catalog_is_grouped_searched_and_filtered_with_a_plain_form() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let list = c.get("/console/connectors", Some(&session)).await;
    assert!(list.body.contains("href=\"/console/catalog\""), "{}", list.body);
    let all = c.get("/console/catalog", Some(&session)).await;
    assert_eq!(all.status, StatusCode::OK);
    for t in latchkey_core::providers::all() {
        assert!(all.body.contains(&format!("href=\"/console/catalog/{}\"", t.name)), "{} is not offered", t.name);
    }
    assert!(all.body.contains("Each user connects their own account (OAuth)") && all.body.contains("Signed requests"));
    assert!(all.body.contains("<form class=\"filters\" method=\"get\" action=\"/console/catalog\""), "{}", all.body);
    assert!(all.body.contains("href=\"https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html\""));
    // Words of the name or title, and the kind.
    let found = c.get("/console/catalog?q=git&kind=", Some(&session)).await;
    assert!(found.body.contains("/console/catalog/github\"") && found.body.contains("/console/catalog/gitlab\""));
    assert!(!found.body.contains("/console/catalog/google\""), "{}", found.body);
    let keys = c.get("/console/catalog?q=github&kind=key", Some(&session)).await;
    assert!(keys.body.contains("/console/catalog/github-token\""), "{}", keys.body);
    assert!(!keys.body.contains("/console/catalog/github\""), "{}", keys.body);
    let none = c.get("/console/catalog?q=no-such-provider-at-all", Some(&session)).await;
    assert!(none.body.contains("No provider template matches"), "{}", none.body);
    let missing = c.get("/console/catalog/nope", Some(&session)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_template_form_asks_for_its_parameters_fields_and_secrets() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let page = c.get("/console/catalog/zendesk", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for needle in [
        "<input id=\"name\" name=\"name\" type=\"text\" required autocomplete=\"off\" spellcheck=\"false\" value=\"zendesk\"",
        "<input id=\"param-subdomain\" name=\"param.subdomain\"",
        "<input id=\"field-auth-client_id\" name=\"field.auth.client_id\" type=\"text\"",
        "<input id=\"secret-auth-client_secret\" name=\"secret.auth.client_secret\" type=\"password\"",
        "Stored as secret <code>zendesk_client_secret</code>",
        "<input id=\"scope\" name=\"scope\"",
        "<code>read write</code>",
        "https://developer.zendesk.com/documentation/api-basics/authentication/oauth-pkce",
    ] {
        assert!(page.body.contains(needle), "{needle}\n{}", page.body);
    }
    // A parameter with a default shows it.
    let aws = c.get("/console/catalog/aws", Some(&session)).await;
    assert!(aws.body.contains("name=\"param.region\" type=\"text\" autocomplete=\"off\" spellcheck=\"false\" placeholder=\"eu-west-1\" value=\"us-east-1\""), "{}", aws.body);
}

#[tokio::test(start_paused = true)]
async fn a_connector_from_a_template_is_checked_whole_before_anything_is_written() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let canary = "CANARYnew-connector-secret-5be1";
    let csrf = c.csrf(&session).await;
    // Every problem at once, next to its field; typed values kept; the secret not.
    let a = c
        .post(
            "/console/catalog/zendesk",
            &cookie,
            form(&[
                ("csrf", &csrf),
                ("name", "help-desk"),
                ("param.subdomain", "acme/evil"),
                ("field.auth.client_id", ""),
                ("secret.auth.client_secret", canary),
                ("environment", "live"),
                ("scope", "tickets:read"),
                ("base_url", ""),
                ("more", "timeout_ms = 0"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("The connector was not created"), "{}", a.body);
    assert!(
        a.body.contains("<p class=\"bad\" id=\"param-subdomain-problem\">`acme/evil` may use letters, digits"),
        "{}",
        a.body
    );
    assert!(a.body.contains("aria-describedby=\"param-subdomain-problem\""), "{}", a.body);
    assert!(a.body.contains("value=\"acme/evil\"") && a.body.contains("value=\"tickets:read\""), "typed values kept");
    assert!(a.body.contains("timeout_ms = 0"), "{}", a.body);
    assert!(!a.body.contains(canary), "the secret was put back into the page");
    assert!(c.engine.connector("help-desk").is_none());
    assert!(c.engine.admin().list_secrets().await.unwrap().is_empty(), "a secret was stored for a refused connector");
    // The merged connector's own problems land next to their fields too.
    let a = c
        .post(
            "/console/catalog/zendesk",
            &cookie,
            form(&[("csrf", &csrf), ("name", "help-desk"), ("param.subdomain", "acme"), ("more", "timeout_ms = 0")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("id=\"field-auth-client_id-problem\">missing"), "{}", a.body);
    assert!(a.body.contains("timeout_ms: 0 is out of range"), "{}", a.body);
    // A good form: the secret sealed (audited), the connector created, its page says so.
    let a = c
        .post(
            "/console/catalog/zendesk",
            &cookie,
            form(&[
                ("csrf", &csrf),
                ("name", "help-desk"),
                ("param.subdomain", "acme"),
                ("field.auth.client_id", "latchkey"),
                ("secret.auth.client_secret", canary),
                ("environment", "live"),
                ("scope", "tickets:read users:read"),
                ("more", "calls.me = { path = \"/users/me.json\" }"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/console/connectors/help-desk?created=1");
    let made = c.engine.connector("help-desk").expect("created");
    assert!(!made.from_file);
    assert_eq!(made.config.base_url.as_str(), "https://acme.zendesk.com/api/v2");
    assert!(made.config.calls.contains_key("me"));
    let latchkey_core::config::AuthConfig::OAuth2AuthorizationCode(auth) = &made.config.auth else { panic!() };
    assert_eq!(auth.client_id, "latchkey");
    assert_eq!(auth.scope, Some(latchkey_core::config::Scope::Many(vec!["tickets:read".into(), "users:read".into()])));
    assert_eq!(made.credential_status(latchkey_core::Env::Live), Ok(()), "the secret typed is the one it names");
    let page = c.get(a.location(), Some(&session)).await;
    assert!(page.body.contains("The connector was created"), "{}", page.body);
    assert!(c.audit_log().contains("\"kind\":\"connector.put\"") && c.audit_log().contains("\"kind\":\"secret.put\""));
    // The same name again is refused, next to the name, and changes nothing.
    let again = c
        .post(
            "/console/catalog/openai",
            &cookie,
            form(&[("csrf", &csrf), ("name", "help-desk"), ("secret.auth.key", "other")]),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("id=\"name-problem\">a connector named `help-desk` exists already"), "{}", again.body);
    assert!(c.engine.connector("help-desk").unwrap().config.base_url.as_str().contains("zendesk"));
    // So is a name the file has.
    let file = c.post("/console/catalog/openai", &cookie, form(&[("csrf", &csrf), ("name", "plain")])).await;
    assert!(file.body.contains("id=\"name-problem\">a connector named `plain` exists already"), "{}", file.body);
    // Nothing showed the secret.
    let mut seen = String::new();
    for path in ["/console/connectors", "/console/connectors/help-desk", "/console/secrets", "/console/events"] {
        seen.push_str(&c.get(path, Some(&session)).await.body);
    }
    assert!(seen.contains("help-desk_client_secret"));
    assert!(!seen.contains(canary) && !c.audit_log().contains(canary));
}

#[tokio::test(start_paused = true)]
async fn a_secret_left_empty_names_the_existing_one_or_is_missing() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let csrf = c.csrf(&session).await;
    let a = c.post("/console/catalog/openai", &cookie, form(&[("csrf", &csrf), ("name", "ai")])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("id=\"secret-auth-key-problem\">missing"), "{}", a.body);
    c.engine.admin().put_secret("openai_key", latchkey_core::Env::Live, &SecretString::from("sk-1")).await.unwrap();
    let page = c.get("/console/catalog/openai", Some(&session)).await;
    assert!(page.body.contains("A secret of that name exists"), "{}", page.body);
    assert!(page.body.contains("the API key (<code>sk-…</code>)"), "backquotes are code: {}", page.body);
    let page = c.post("/console/catalog/openai", &cookie, form(&[("csrf", &csrf), ("name", "openai")])).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(c.engine.connector("openai").unwrap().credential_status(latchkey_core::Env::Live), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_blank_connector_takes_toml_or_json() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let csrf = c.csrf(&session).await;
    let page = c.get("/console/blank-connector", Some(&session)).await;
    assert!(page.body.contains("<textarea id=\"definition\" name=\"definition\""), "{}", page.body);
    let toml = "[connectors.weather]\nbase_url = \"https://weather.test\"\nauth = { method = \"api_key_query\", name = \"appid\", key = { secret = \"weather_key\" } }\n";
    let a =
        c.post("/console/blank-connector", &cookie, form(&[("csrf", &csrf), ("name", ""), ("definition", toml)])).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(c.engine.connector("weather").is_some());
    let json = r#"{"provider": "openai", "auth": {"key": {"secret": "ai_key"}}}"#;
    let a = c
        .post("/console/blank-connector", &cookie, form(&[("csrf", &csrf), ("name", "ai"), ("definition", json)]))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(c.engine.connector("ai").unwrap().config.base_url.as_str(), "https://api.openai.com/v1");
    // Problems: each with its field, the text kept.
    let bad = "base_url = \"ftp://x\"\nauth = { method = \"api_key_header\", key = { env = \"HOME\" } }";
    let a = c
        .post("/console/blank-connector", &cookie, form(&[("csrf", &csrf), ("name", "bad"), ("definition", bad)]))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("base_url: "), "{}", a.body);
    assert!(a.body.contains("ftp://x"), "the text is kept: {}", a.body);
    let a = c
        .post(
            "/console/blank-connector",
            &cookie,
            form(&[("csrf", &csrf), ("name", "x"), ("definition", "base_url =")]),
        )
        .await;
    assert!(a.body.contains("the definition is not TOML"), "{}", a.body);
    let a = c
        .post("/console/blank-connector", &cookie, form(&[("csrf", &csrf), ("name", "weather"), ("definition", toml)]))
        .await;
    assert!(a.body.contains("name: a connector named `weather` exists already"), "{}", a.body);
    assert!(c.engine.connector("bad").is_none() && c.engine.connector("x").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_console_switched_off_is_not_there() {
    // `[server.console]` after the connectors is still the server's table.
    let config = format!("{CONFIG}\n[server.console]\nenabled = false\n");
    let settings = EngineSettings {
        config: Config::parse(&config, "test.toml").unwrap(),
        bootstrap_admin_key: Some(SecretString::from(ADMIN)),
        public_url: "https://lk.example.com".into(),
        clock: Some(FakeClock::at(T0)),
        ..Default::default()
    };
    assert!(!settings.config.server.console_enabled());
    let engine = Engine::start(Arc::new(MemoryStore::new()), Arc::new(Vault::new(&MasterKey::generate())), settings)
        .await
        .unwrap();
    let router = crate::router(AppState::new(engine));
    for (path, methods) in super::ROUTES {
        for m in *methods {
            let req = Request::builder().method(m.to_uppercase().as_str()).uri(*path).body(Body::empty()).unwrap();
            let response = tower_service::Service::call(&mut router.clone(), req).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{m} {path}");
            assert_eq!(response.headers()["latchkey-error"], "not_found", "{m} {path}");
        }
    }
}

// ---- New connector: imported from a cURL command, an OpenAPI document, a Postman collection ----

/// The value of the hidden field `name` of a page.
fn hidden(body: &str, name: &str) -> String {
    let needle = format!("type=\"hidden\" name=\"{name}\" value=\"");
    let at = body.find(&needle).unwrap_or_else(|| panic!("no hidden {name}: {body}")) + needle.len();
    body[at..].split('"').next().unwrap().to_owned()
}

/// The text of the textarea `id` of a page, unescaped.
fn textarea(body: &str, id: &str) -> String {
    let start = body.find(&format!("<textarea id=\"{id}\"")).unwrap_or_else(|| panic!("no textarea {id}: {body}"));
    let open = start + body[start..].find('>').unwrap() + 1;
    let close = open + body[open..].find("</textarea>").unwrap();
    body[open..close].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[tokio::test(start_paused = true)]
async fn a_curl_command_imports_with_its_credential_sealed_and_never_shown() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let canary = "CANARYimported-bearer-9c2e";
    let csrf = c.csrf(&session).await;
    let page = c.get("/console/import", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<textarea id=\"document\" name=\"document\""), "{}", page.body);
    assert!(c.get("/console/catalog", Some(&session)).await.body.contains("href=\"/console/import\""));
    let command = format!("curl -H 'Authorization: Bearer {canary}' https://api.echo.test/v1/users/42");
    let mut seen = String::new();
    let preview = c
        .post(
            "/console/import",
            &cookie,
            form(&[("csrf", &csrf), ("kind", ""), ("document", &command), ("name", "echo"), ("base_url", "")]),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    seen.push_str(&preview.body);
    seen.push_str(&format!("{:?}", preview.headers));
    let definition = textarea(&preview.body, "definition");
    assert!(definition.contains("[connectors.echo]"), "{definition}");
    assert!(definition.contains("secret = \"echo_token\""), "{definition}");
    assert!(preview.body.contains("secret <code>echo_token</code>"), "{}", preview.body);
    assert!(preview.body.contains("will be stored in the vault"), "{}", preview.body);
    let sealed = hidden(&preview.body, "credentials");
    // Nothing stored yet.
    assert!(c.engine.connector("echo").is_none());
    assert!(c.engine.admin().list_secrets().await.unwrap().is_empty());
    // Another session's form does not carry the credentials over.
    let other = c.sign_in(ADMIN).await;
    let other_csrf = c.csrf(&other).await;
    let a = c
        .post(
            "/console/import/create",
            &format!("lk_console={other}"),
            form(&[("csrf", &other_csrf), ("name", "echo"), ("definition", &definition), ("credentials", &sealed)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("import the document again"), "{}", a.body);
    seen.push_str(&a.body);
    // A problem in the edited definition: the review again, nothing written.
    let broken = definition.replace("https://api.echo.test", "ftp://api.echo.test");
    let a = c
        .post(
            "/console/import/create",
            &cookie,
            form(&[("csrf", &csrf), ("name", "echo"), ("definition", &broken), ("credentials", &sealed)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("base_url: "), "{}", a.body);
    assert_eq!(hidden(&a.body, "credentials"), sealed, "the sealed credentials go round again");
    seen.push_str(&a.body);
    assert!(c.engine.connector("echo").is_none());
    assert!(c.engine.admin().list_secrets().await.unwrap().is_empty(), "a secret was stored for a refused connector");
    // Create: checked, the secret sealed, the connector created.
    let a = c
        .post(
            "/console/import/create",
            &cookie,
            form(&[
                ("csrf", &csrf),
                ("name", "echo"),
                ("definition", &definition),
                ("credentials", &sealed),
                ("environment", "live"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/console/connectors/echo?created=1");
    let made = c.engine.connector("echo").expect("created");
    assert_eq!(made.config.base_url.as_str(), "https://api.echo.test");
    assert_eq!(made.credential_status(latchkey_core::Env::Live), Ok(()), "the credential found is the one it names");
    let stored = latchkey_core::store::Store::list_secrets(&c.store).await.unwrap();
    assert_eq!(stored.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["echo_token"]);
    for path in ["/console/connectors", "/console/connectors/echo?created=1", "/console/secrets", "/console/events"] {
        seen.push_str(&c.get(path, Some(&session)).await.body);
    }
    assert!(seen.contains("echo_token"));
    assert!(!seen.contains(canary), "the credential was put in a page");
    assert!(!c.audit_log().contains(canary));
    assert!(c.audit_log().contains("\"kind\":\"connector.put\"") && c.audit_log().contains("\"kind\":\"secret.put\""));
    // The review is good for 15 minutes only.
    let late = c
        .post(
            "/console/import",
            &cookie,
            form(&[("csrf", &csrf), ("kind", "curl"), ("document", &command), ("name", "late")]),
        )
        .await;
    let late_sealed = hidden(&late.body, "credentials");
    c.clock.advance(latchkey_core::engine::console::IMPORT_CREDENTIALS_MS + 1);
    let session = c.sign_in(ADMIN).await;
    let csrf = c.csrf(&session).await;
    let a = c
        .post(
            "/console/import/create",
            &format!("lk_console={session}"),
            form(&[("csrf", &csrf), ("name", "late"), ("definition", &definition), ("credentials", &late_sealed)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(c.engine.connector("late").is_none());
}

const TWO_TAGS: &str = r#"openapi: 3.0.3
info: { title: Pet Shop, version: "1" }
servers: [{ url: "https://pets.test/v1" }]
components:
  securitySchemes:
    key: { type: apiKey, in: header, name: X-Api-Key }
security: [{ key: [] }]
paths:
  /pets:
    get: { operationId: listPets, tags: [pets], responses: { "200": { description: ok } } }
  /pets/{id}:
    get:
      operationId: getPet
      tags: [pets]
      parameters: [{ name: id, in: path, required: true, schema: { type: integer } }]
      responses: { "200": { description: ok } }
  /orders:
    get: { operationId: listOrders, tags: [store], responses: { "200": { description: ok } } }
"#;

#[tokio::test(start_paused = true)]
async fn an_openapi_document_imports_the_tags_chosen() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let csrf = c.csrf(&session).await;
    let preview = c
        .post(
            "/console/import",
            &cookie,
            form(&[("csrf", &csrf), ("kind", ""), ("document", TWO_TAGS), ("name", ""), ("tags", "pets")]),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    let definition = textarea(&preview.body, "definition");
    assert!(definition.contains("list_pets") && definition.contains("get_pet"), "{definition}");
    assert!(!definition.contains("list_orders"), "{definition}");
    assert!(!preview.body.contains("id=\"found\""), "no credential in the document: {}", preview.body);
    assert!(preview.body.contains("which the document did not hold"), "{}", preview.body);
    let sealed = hidden(&preview.body, "credentials");
    let a = c
        .post(
            "/console/import/create",
            &cookie,
            form(&[("csrf", &csrf), ("name", ""), ("definition", &definition), ("credentials", &sealed)]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let made = c.engine.connector("pet_shop").or_else(|| c.engine.connector("pet-shop")).expect(&definition);
    assert_eq!(made.config.calls.len(), 2);
    assert!(c.engine.admin().list_secrets().await.unwrap().is_empty());
    // Both tags: every operation.
    let both = c
        .post(
            "/console/import",
            &cookie,
            form(&[("csrf", &csrf), ("document", TWO_TAGS), ("name", "shop2"), ("tags", "pets, store")]),
        )
        .await;
    assert!(textarea(&both.body, "definition").contains("list_orders"), "{}", both.body);
}

#[tokio::test(start_paused = true)]
async fn a_bad_document_shows_the_importers_error_next_to_it() {
    let c = Console::start("https://lk.example.com").await;
    let session = c.sign_in(ADMIN).await;
    let cookie = format!("lk_console={session}");
    let csrf = c.csrf(&session).await;
    // An OpenAPI document that is not one: its text kept, the importer's message under it.
    let a = c
        .post("/console/import", &cookie, form(&[("csrf", &csrf), ("kind", "openapi"), ("document", "{\"a\": 1}")]))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("<p class=\"bad\" id=\"document-problem\">not an OpenAPI document"), "{}", a.body);
    assert!(a.body.contains("aria-describedby=\"document-problem\""), "{}", a.body);
    assert!(textarea(&a.body, "document").contains("{\"a\": 1}"), "{}", a.body);
    // A tag no operation has.
    let a =
        c.post("/console/import", &cookie, form(&[("csrf", &csrf), ("document", TWO_TAGS), ("tags", "nope")])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("nothing to import"), "{}", a.body);
    // A cURL command that cannot be read: the message, and the text (which may hold a credential)
    // not put back.
    let canary = "CANARYbad-curl-31d0";
    let bad = format!("curl -H 'Authorization: Bearer {canary}' 'https://api.echo.test/x");
    let a = c.post("/console/import", &cookie, form(&[("csrf", &csrf), ("document", &bad)])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("id=\"document-problem\""), "{}", a.body);
    assert!(a.body.contains("paste it again"), "{}", a.body);
    assert!(!a.body.contains(canary), "{}", a.body);
    // Without the session's token: refused.
    let a = c.post("/console/import", &cookie, form(&[("csrf", "wrong"), ("document", TWO_TAGS)])).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Too large: refused before it is read.
    let huge = "a".repeat(super::import::BODY_LIMIT + 1);
    let a = c.post("/console/import", &cookie, form(&[("csrf", &csrf), ("document", &huge)])).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &a.body[..a.body.len().min(500)]);
    assert!(a.body.contains("larger than an import reads"), "{}", &a.body[..a.body.len().min(2000)]);
    let just_over = "a".repeat(super::import::MAX_DOCUMENT + 1);
    let a = c.post("/console/import", &cookie, form(&[("csrf", &csrf), ("document", &just_over)])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("larger than 2 MiB"), "{}", &a.body[..a.body.len().min(2000)]);
    assert!(!a.body.contains(&just_over[..1000]), "a large text is not echoed");
}
