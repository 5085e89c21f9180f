//! The admin console in a real browser (headless Debian Chromium driven by playwright-core,
//! `crates/testkit/peers/browser/steps.mjs`): an operator's visit, keyboard-only navigation,
//! no request to another origin, and no secret in any page, log or screenshot's page.
//!
//! Each test saves a screenshot of every page it visits under
//! `target/screenshots/<test>/NN-<page>.png` (full pages, numbered in visiting order).

use std::path::PathBuf;

use latchkey_testkit::canary::canary;
use latchkey_testkit::peers::browser::run_steps;
use latchkey_testkit::peers::httpbin::httpbin;
use serde_json::{Value, json};

use crate::{Latchkey, Reply, bin};

/// `target/screenshots/<test>`, emptied.
fn screenshot_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> String {
    format!(
        r#"
[connectors.weather]
base_url = "{bin}"
auth = {{ method = "api_key_header", name = "X-Api-Key", key = {{ secret = "weather_key" }} }}
calls.forecast = {{ path = "/json", description = "Today's forecast" }}
calls.echo = {{ path = "/headers", description = "What the upstream received" }}
"#,
        bin = httpbin().base_url
    )
}

async fn visit(lk: &Latchkey, test: &str, steps: Value) -> (Value, PathBuf) {
    let dir = screenshot_dir(test);
    let input = json!({"base_url": lk.base_url, "steps": steps, "screenshot_dir": dir, "timeout_ms": 90000});
    let report = tokio::task::spawn_blocking(move || run_steps(&input)).await.unwrap();
    (report.unwrap_or_else(|e| panic!("{e}")), dir)
}

/// Nothing left for another origin, every page was screenshotted, every walk reached every
/// control; the HTML of every page visited, for scans.
fn check_visit(report: &Value, dir: &std::path::Path) -> String {
    let foreign = report["foreign"].as_array().unwrap();
    assert!(foreign.is_empty(), "requests to another origin: {foreign:?}");
    assert!(!report["requests"].as_array().unwrap().is_empty());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_a_missing_secret_and_revokes_an_app_key_in_the_browser() {
    let lk = Latchkey::start(bin(), &config());
    let app = lk.app_key("live").await;
    let app_id = &app["lk_live_".len().."lk_live_".len() + 12];
    let value = canary("console");
    let steps = json!([
        {"goto": "/console"},
        {"expect_text": "Admin key"},
        // Signed in with the keyboard: type the key, press Enter.
        {"fill": "#admin_key", "value": lk.admin()},
        {"focus": "#admin_key"},
        {"press": "Enter"},
        {"expect_path": "/console/connectors"},
        {"expect_text": "missing"},
        {"click": "a[aria-label='Set secret weather_key']"},
        {"expect_path": "/console/secrets?name=weather_key"},
        {"fill": "#value", "value": value},
        {"click": "button:has-text('Save secret')"},
        {"expect_text": "The secret was saved"},
        {"click": "nav a:has-text('Connectors')"},
        {"expect_text": "present"},
        {"click": "a:has-text('weather')"},
        {"expect_text": "ready"},
        {"click": "button:has-text('Send')"},
        {"expect_text": "Status 200"},
        // An upstream that echoes the request: the key it received is not shown.
        {"select": "#call", "value": "echo"},
        {"click": "button:has-text('Send')"},
        {"expect_text": "\"X-Api-Key\": \"[secret]\""},
        {"click": "nav a:has-text('App keys')"},
        {"expect_text": format!("lk_live_{app_id}")},
        {"click": format!("button[aria-label='Revoke key lk_live_{app_id}']")},
        {"expect_text": "The key was revoked"},
        {"click": "button:has-text('Sign out')"},
        {"expect_text": "You are signed out"},
        {"goto": "/console/connectors"},
        {"expect_path": "/console"},
    ]);
    let (report, dir) = visit(&lk, "console_operator", steps).await;
    let html = check_visit(&report, &dir);
    assert!(html.contains("<strong>200 OK</strong>"), "the call's answer was shown");
    assert!(!html.contains(&value), "the secret's value reached a page");
    assert!(!html.contains(lk.admin()), "the admin key reached a page");
    assert!(!lk.output().contains(&value), "the secret's value reached the log");

    // What the browser did, seen through the API.
    let secrets = Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/secrets").send().await.unwrap()).await;
    assert!(secrets.body.contains("weather_key"), "{}", secrets.body);
    let r = lk.call(&app, "weather", "forecast", json!({})).await;
    assert_eq!(r.status, 401, "the revoked key still works: {}", r.body);
    let r = lk.call(&lk.app_key("live").await, "weather", "forecast", json!({})).await;
    assert_eq!(r.status, 200, "the secret set in the browser is used: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_control_is_reached_with_the_keyboard() {
    let lk = Latchkey::start(bin(), &config());
    lk.put_secret("weather_key", "live", &canary("kbd")).await;
    lk.app_key("live").await;
    let mut steps = vec![
        json!({"goto": "/console"}),
        json!({"tab_walk": true}),
        json!({"fill": "#admin_key", "value": lk.admin()}),
        json!({"focus": "#admin_key"}),
        json!({"press": "Enter"}),
    ];
    for page in [
        "connectors",
        "connectors/weather",
        "secrets",
        "keys",
        "connections",
        "events",
        "users",
        "catalog?q=git",
        "catalog/zendesk",
        "blank-connector",
        "import",
    ] {
        steps.push(json!({"goto": format!("/console/{page}")}));
        steps.push(json!({"tab_walk": true}));
    }
    let (report, dir) = visit(&lk, "console_keyboard", Value::Array(steps)).await;
    check_visit(&report, &dir);
    assert_eq!(report["walks"].as_array().unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone() {
    let lk = Latchkey::start(bin(), &config());
    lk.app_key("live").await;
    let mut steps = vec![
        json!({"viewport": [390, 844]}),
        json!({"goto": "/console"}),
        json!({"fits": true}),
        json!({"fill": "#admin_key", "value": lk.admin()}),
        json!({"click": "button:has-text('Sign in')"}),
    ];
    for page in [
        "connectors",
        "connectors/weather",
        "secrets",
        "keys",
        "connections",
        "events",
        "users",
        "catalog",
        "catalog/aws",
        "blank-connector",
        "import",
    ] {
        steps.push(json!({"goto": format!("/console/{page}")}));
        steps.push(json!({"fits": true}));
    }
    let (report, dir) = visit(&lk, "console_phone", Value::Array(steps)).await;
    check_visit(&report, &dir);
}

/// An operator adds a connector from the catalog: finds the provider, fills its form (a
/// mistake first, then right), and the new connector's page shows it ready and makes a call.
/// The secret typed in the form is in no page, no log line, and not in the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_connector_from_the_catalog_in_the_browser() {
    // The new connector goes to httpbin on this machine: API connectors may reach it here.
    let config = format!("[server]\napi_connectors_private_egress = true\n{}", config());
    let lk = Latchkey::start(bin(), &config);
    let value = canary("catalog");
    let upstream = httpbin().base_url.clone();
    let steps = json!([
        {"goto": "/console"},
        {"fill": "#admin_key", "value": lk.admin()},
        {"click": "button:has-text('Sign in')"},
        {"expect_path": "/console/connectors"},
        {"click": "a:has-text('New connector')"},
        {"expect_path": "/console/catalog"},
        {"expect_text": "Each user connects their own account (OAuth)"},
        {"fill": "input[name='q']", "value": "openai"},
        {"click": "button:has-text('Filter')"},
        {"expect_path": "/console/catalog?q=openai&kind="},
        {"click": "a:has-text('OpenAI (API key)')"},
        {"expect_path": "/console/catalog/openai"},
        // A mistake: a base URL that is no URL. The page says so next to the field, keeps
        // what was typed, and asks for the secret again.
        {"fill": "#name", "value": "assistant"},
        {"fill": "#secret-auth-key", "value": value},
        {"fill": "#base_url", "value": "not a url"},
        {"fill": "#more", "value": "calls.echo = { path = \"/headers\", description = \"What the upstream received\" }"},
        {"click": "button:has-text('Create connector')"},
        {"expect_path": "/console/catalog/openai"},
        {"expect_text": "The connector was not created"},
        {"expect_text": "The secrets typed were not kept"},
        {"fill": "#secret-auth-key", "value": value},
        {"fill": "#base_url", "value": upstream},
        {"click": "button:has-text('Create connector')"},
        {"expect_path": "/console/connectors/assistant?created=1"},
        {"expect_text": "The connector was created"},
        {"expect_text": "ready"},
        {"expect_text": "assistant_key"},
        {"click": "button:has-text('Send')"},
        {"expect_text": "Status 200"},
        // httpbin echoes the request: the key it received is not shown.
        {"expect_text": "\"Authorization\": \"Bearer [secret]\""},
        {"click": "nav a:has-text('Connectors')"},
        {"expect_text": "assistant"},
        {"expect_text": "present"},
        // A blank connector, pasted as the configuration file has it.
        {"click": "a:has-text('New connector')"},
        {"click": "a:has-text('blank connector')"},
        {"fill": "#definition", "value": format!("[connectors.bin]\nbase_url = \"{upstream}\"\nauth = {{ method = \"none\" }}\ncalls.get = {{ path = \"/get\" }}\n")},
        {"click": "button:has-text('Create connector')"},
        {"expect_path": "/console/connectors/bin?created=1"},
        {"click": "button:has-text('Send')"},
        {"expect_text": "Status 200"},
    ]);
    let (report, dir) = visit(&lk, "console_catalog", steps).await;
    let html = check_visit(&report, &dir);
    assert!(html.contains("id=\"base_url-problem\""), "the mistake was shown next to its field");
    assert!(!html.contains(&value), "the secret's value reached a page");
    assert!(!lk.output().contains(&value), "the secret's value reached the log");
    let secrets = [value.clone()];
    let found = latchkey_testkit::canary::find(&latchkey_testkit::canary::read_dir_bytes(&lk.data_dir), &secrets);
    assert_eq!(found, Vec::<&str>::new(), "the secret's value is in the data directory unsealed");

    // What the browser made, through the API: an API connector from the template, and the
    // secret it names, whose value signs calls.
    let c =
        Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/connectors/assistant").send().await.unwrap()).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.body.contains("assistant_key") && !c.body.contains(&value), "{}", c.body);
    let r = lk.call(&lk.app_key("live").await, "assistant", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&format!("Bearer {value}")), "the secret typed in the browser signs the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_imports_a_curl_command_in_the_browser() {
    // The imported connector goes to httpbin on this machine: API connectors may reach it here.
    let config = format!("[server]\napi_connectors_private_egress = true\n{}", config());
    let lk = Latchkey::start(bin(), &config);
    let value = canary("import");
    let upstream = httpbin().base_url.clone();
    let command = format!("curl -H 'Authorization: Bearer {value}' {upstream}/headers");
    let steps = json!([
        {"goto": "/console"},
        {"fill": "#admin_key", "value": lk.admin()},
        {"click": "button:has-text('Sign in')"},
        {"expect_path": "/console/connectors"},
        {"click": "a:has-text('New connector')"},
        {"expect_path": "/console/catalog"},
        {"click": "a:has-text('import')"},
        {"expect_path": "/console/import"},
        // A mistake first: a command that is not one. The importer's message under the text,
        // and the text (which may hold a credential) not put back.
        {"fill": "#document", "value": format!("curl -H 'Authorization: Bearer {value}' '{upstream}/headers")},
        {"click": "button:has-text('Preview')"},
        {"expect_path": "/console/import"},
        {"expect_text": "Nothing was imported from the cURL command"},
        {"expect_text": "paste it again"},
        {"fill": "#document", "value": command},
        {"fill": "#name", "value": "echoer"},
        {"click": "button:has-text('Preview')"},
        {"expect_path": "/console/import"},
        {"expect_text": "Credentials found"},
        {"expect_text": "echoer_token"},
        {"expect_text": "will be stored in the vault"},
        {"tab_walk": true},
        {"click": "button:has-text('Create connector')"},
        {"expect_path": "/console/connectors/echoer?created=1"},
        {"expect_text": "The connector was created"},
        {"expect_text": "ready"},
        {"click": "button:has-text('Send')"},
        {"expect_text": "Status 200"},
        // httpbin echoes the request: the credential it received is not shown.
        {"expect_text": "\"Authorization\": \"Bearer [secret]\""},
    ]);
    let (report, dir) = visit(&lk, "console_import", steps).await;
    let html = check_visit(&report, &dir);
    assert!(html.contains("id=\"document-problem\""), "the importer's error was shown next to the text");
    assert!(html.contains("echoer_token"), "the credential is listed by its secret name");
    assert!(!html.contains(&value), "the credential's value reached a page");
    assert!(!report["pages"].to_string().contains(&value), "the credential's value reached a page's text");
    assert!(!lk.output().contains(&value), "the credential's value reached the log");
    let secrets = [value.clone()];
    let found = latchkey_testkit::canary::find(&latchkey_testkit::canary::read_dir_bytes(&lk.data_dir), &secrets);
    assert_eq!(found, Vec::<&str>::new(), "the credential's value is in the data directory unsealed");

    // What the browser made, through the API: the connector names the secret, whose value
    // (the one pasted) signs its call.
    let c = Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/connectors/echoer").send().await.unwrap()).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.body.contains("echoer_token") && !c.body.contains(&value), "{}", c.body);
    let call = c.body.split("\"calls\"").nth(1).and_then(|rest| rest.split('"').nth(1)).unwrap().to_owned();
    let r = lk.call(&lk.app_key("live").await, "echoer", &call, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&format!("Bearer {value}")), "the credential pasted in the browser signs the call");
}
