//! The connect page in a real browser (headless Debian Chromium driven by playwright-core,
//! `crates/testkit/peers/browser/steps.mjs`): an end user opens a link for several connectors,
//! enters an API key for a `per_user` connector (a call for that user then carries it to
//! httpbin), connects another through oidc-provider from the page, and goes back to the app;
//! keyboard-only navigation; a phone's width; a stolen link opened twice; nothing loaded from
//! another origin; the key never in a page, the log or the events (canary).
//!
//! Each test saves a screenshot of every page it visits under
//! `target/screenshots/<test>/NN-<page>.png` (full pages, numbered in visiting order).

use std::path::PathBuf;

use latchkey_testkit::canary::canary;
use latchkey_testkit::peers::browser::run_steps;
use latchkey_testkit::peers::httpbin::httpbin;
use latchkey_testkit::peers::oidc::oidc;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Latchkey, Reply, bin};

/// `target/screenshots/<test>`, emptied.
fn screenshot_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn return_to() -> String {
    format!("{}/anything/back", httpbin().base_url)
}

fn config() -> String {
    format!(
        r##"
[server]
return_to_allow = ["{back}"]
api_connectors_private_egress = true

[server.connect_page]
title = "Acme connects"
accent_color = "#8a2be2"

[connectors.weather]
base_url = "{bin}"
per_user = true
verify = "echo"
auth = {{ method = "api_key_header", name = "X-Api-Key" }}
calls.echo = {{ path = "/headers" }}
connect = {{ label = "Weather API", help = "Your key is on your account page.", help_url = "https://weather.example/keys" }}

[connectors.login]
base_url = "{bin}"
per_user = true
verify = "check"
auth = {{ method = "basic" }}
calls.check = {{ path = "/basic-auth/alice/right-password" }}
connect = {{ label = "Login service" }}
"##,
        bin = httpbin().base_url,
        back = return_to(),
    )
}

async fn visit(lk: &Latchkey, test: &str, steps: Value) -> (Value, PathBuf) {
    let dir = screenshot_dir(test);
    let input = json!({"base_url": lk.base_url, "steps": steps, "screenshot_dir": dir, "timeout_ms": 90000});
    let report = tokio::task::spawn_blocking(move || run_steps(&input)).await.unwrap();
    (report.unwrap_or_else(|e| panic!("{e}")), dir)
}

/// Every page was screenshotted, every walk reached every control; requests to another
/// origin only to `allowed` origins (the provider's pages, the app's); the HTML of every page.
fn check_visit(report: &Value, dir: &std::path::Path, allowed: &[&str]) -> String {
    let foreign = report["foreign"].as_array().unwrap();
    let stray: Vec<&Value> =
        foreign.iter().filter(|u| !allowed.iter().any(|a| u.as_str().unwrap().starts_with(a))).collect();
    assert!(stray.is_empty(), "requests to another origin: {stray:?}");
    let pages = report["pages"].as_array().unwrap();
    let mut html = String::new();
    for p in pages {
        let shot = PathBuf::from(p["screenshot"].as_str().unwrap());
        assert!(shot.starts_with(dir) && std::fs::metadata(&shot).unwrap().len() > 1000, "{shot:?}");
        html.push_str(p["html"].as_str().unwrap());
    }
    for walk in report["walks"].as_array().unwrap() {
        assert!(walk["controls"].as_u64().unwrap() > 0, "{walk}");
        assert_eq!(walk["missed"], json!([]), "controls the keyboard never reached on {}", walk["url"]);
    }
    eprintln!("{} screenshots in {}", pages.len(), dir.display());
    html
}

/// A connect link (its path at Latchkey) for `user`.
async fn link(lk: &Latchkey, app: &str, user: &str, connectors: &[&str]) -> String {
    let body = json!({"user": user, "connectors": connectors, "return_to": return_to()});
    let r = Reply::read(lk.http.post(lk.url("/v1/connect")).bearer_auth(app).json(&body).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let url = r.json()["url"].as_str().unwrap().to_owned();
    url.strip_prefix(&lk.base_url).unwrap_or_else(|| panic!("{url}")).to_owned()
}

async fn call_as(lk: &Latchkey, app: &str, connector: &str, call: &str, user: &str) -> Reply {
    let req = lk
        .http
        .post(lk.url(&format!("/v1/connectors/{connector}/calls/{call}")))
        .bearer_auth(app)
        .json(&json!({"params": {}, "user": user}));
    Reply::read(req.send().await.unwrap()).await
}

/// Connector `oidc` (authorization code at oidc-provider), defined through the admin API once
/// Latchkey's callback URL is known.
async fn add_oidc(lk: &Latchkey) {
    let o = oidc();
    let client = o
        .register("client_secret_basic", &["authorization_code", "refresh_token"], &[&lk.url("/oauth/callback")])
        .await;
    lk.put_secret("cs", "live", client.client_secret.as_deref().unwrap()).await;
    let def = json!({"base_url": httpbin().base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": o.authorize_url, "token_url": o.token_url,
        "client_id": client.client_id, "client_secret": {"secret": "cs"}, "scope": ["openid", "email"],
        "profile_url": o.userinfo_url, "user_id_path": "sub", "issuer": o.issuer},
        "calls": {"me": {"path": "/bearer"}},
        "connect": {"label": "Example ID"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/oidc").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

fn origin(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.origin().ascii_serialization()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_user_enters_a_key_and_connects_an_account_on_the_page() {
    let lk = Latchkey::start(bin(), &config());
    add_oidc(&lk).await;
    let app = lk.app_key("live").await;
    let key = canary("connect-page");
    let wrong = canary("wrong-password");
    let path = link(&lk, &app, "alice", &["weather", "login", "oidc"]).await;
    let steps = json!([
        {"goto": path},
        {"expect_path": "/connect"},
        {"expect_text": "Acme connects"},
        {"expect_text": "Weather API (Not connected)"},
        {"expect_text": "Your key is on your account page."},
        // The API key, typed and sent with the keyboard.
        {"fill": "#weather-key", "value": key},
        {"focus": "#weather-key"},
        {"press": "Enter"},
        {"expect_path": "/connect?saved=weather"},
        {"expect_text": "Weather API (Connected)"},
        // A password the upstream refuses (verify): shown on the page, nothing saved.
        {"fill": "#login-username", "value": "alice"},
        {"fill": "#login-password", "value": wrong},
        {"click": "section[aria-labelledby='c-login'] button[type=submit]"},
        {"expect_text": "Not saved"},
        {"expect_text": "Login service (Not connected)"},
        // The OAuth connector, through oidc-provider's login and consent, back to the page.
        {"click": "a:has-text('Connect Example ID')"},
        {"fill": "input[name=login]", "value": "alice"},
        {"fill": "input[name=password]", "value": "any-password"},
        {"click": "button[type=submit]"},
        {"click": "button[type=submit]"},
        {"expect_text": "Connected."},
        {"expect_text": "Example ID (Connected)"},
        {"click": "a:has-text('Done')"},
        {"expect_path": "/anything/back?status=done"},
    ]);
    let (report, dir) = visit(&lk, "connect_page_end_user", steps).await;
    // oidc-provider's own login page asks Google for a font (its page, not Latchkey's: the
    // other tests check that Latchkey's pages ask no other origin for anything).
    let allowed = [origin(&oidc().issuer), httpbin().base_url.clone(), "https://fonts.googleapis.com/".into()];
    let html = check_visit(&report, &dir, &allowed.iter().map(String::as_str).collect::<Vec<_>>());
    // Nothing but the provider's pages and the app's page at another origin: every request
    // made while on Latchkey's pages is Latchkey's.
    let requests: Vec<&str> = report["requests"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(requests.iter().any(|r| r.ends_with("/connect/style.css")), "{requests:?}");
    assert!(!html.contains(&key) && !html.contains(&wrong), "a value the user entered reached a page");

    // A call for alice carries her key to httpbin.
    let r = call_as(&lk, &app, "weather", "echo", "alice").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["X-Api-Key"], key.as_str(), "{}", r.body);
    // And the OAuth connection made from the page signs her calls.
    let r = call_as(&lk, &app, "oidc", "me", "alice").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Nothing saved for the refused password.
    let r = call_as(&lk, &app, "login", "check", "alice").await;
    assert!(r.status >= 400 && r.status < 500, "{}", r.body);
    assert!(r.body.contains("alice") || r.body.contains("connection"), "{}", r.body);

    // The key never in the log or the events.
    let events = Reply::read(lk.admin_req(Method::GET, "/v1/admin/events").send().await.unwrap()).await;
    assert!(events.body.contains("connection."), "{}", events.body);
    for (what, text) in [("events", events.body.as_str()), ("log", &lk.output())] {
        assert!(!text.contains(&key) && !text.contains(&wrong), "a value the user entered reached the {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_reached_with_the_keyboard_fits_a_phone_and_loads_nothing_from_elsewhere() {
    let lk = Latchkey::start(bin(), &config());
    let app = lk.app_key("live").await;
    let path = link(&lk, &app, "bob", &["weather", "login"]).await;
    let steps = json!([
        {"goto": path},
        {"tab_walk": true},
        {"viewport": [390, 844]},
        {"fits": true},
        {"tab_walk": true},
        // A refusal is shown on the page, which the keyboard still walks.
        {"fill": "#login-username", "value": "bob"},
        {"fill": "#login-password", "value": "nope"},
        {"focus": "#login-password"},
        {"press": "Enter"},
        {"expect_text": "Not saved"},
        {"fits": true},
        {"tab_walk": true},
    ]);
    let (report, dir) = visit(&lk, "connect_page_keyboard", steps).await;
    check_visit(&report, &dir, &[]);
    assert_eq!(report["walks"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_link_opened_a_second_time_is_refused() {
    let lk = Latchkey::start(bin(), &config());
    let app = lk.app_key("live").await;
    let path = link(&lk, &app, "carol", &["weather"]).await;
    let steps = json!([
        {"goto": path},
        {"expect_path": "/connect"},
        {"expect_text": "Weather API"},
        // The same link again (another browser would fare the same: it is spent).
        {"goto": path},
        {"expect_text": "used already"},
    ]);
    let (report, dir) = visit(&lk, "connect_page_stolen_link", steps).await;
    let html = check_visit(&report, &dir, &[]);
    assert!(html.contains("ask the app for a new one"), "the refusal is a page: {html}");
    // And over plain HTTP, a third time: a page too, not JSON.
    let r = Reply::read(lk.http.get(lk.url(&path)).send().await.unwrap()).await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.starts_with("<!DOCTYPE html>"), "{}", r.body);
}
