//! The token lifecycle (SPEC §5) against an in-process provider that misbehaves on request.

use std::time::Duration;

use latchkey_testkit::fake_oauth::{FakeOAuth, Step};
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

/// A Latchkey with connector `api`: the password grant at the fake, calls `echo` (accepts its
/// tokens), `soft` (a non-standard expiry signal) and `deny` (401 to every token), `extra` TOML
/// appended to the connector (e.g. `refresh_skew_s`).
pub(crate) async fn setup(fake: &FakeOAuth, extra: &str) -> (Latchkey, String) {
    let config = format!(
        "[connectors.api]\nbase_url = \"{base}\"\n{extra}\n\
         auth = {{ method = \"oauth2_password\", token_url = \"{token}\", username = \"ada\", password = {{ secret = \"pw\" }}, \
         client_id = \"app\", client_secret = {{ secret = \"cs\" }} }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n\
         [connectors.api.calls.soft]\npath = \"/api/soft-expiry\"\n\
         [connectors.api.calls.deny]\npath = \"/api/always-401\"\n",
        base = fake.base_url,
        token = fake.token_url,
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("pw", "live", "ada-password").await;
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    (lk, app)
}

async fn events(lk: &Latchkey, query: &str) -> Vec<Value> {
    let r = Reply::read(lk.admin_req(Method::GET, &format!("/v1/admin/events{query}")).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["events"].as_array().unwrap().clone()
}

fn kinds(ev: &[Value]) -> Vec<String> {
    ev.iter().rev().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_password_grant_sends_exactly_what_rfc6749_says() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = setup(&fake, "").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.grant(), "password");
    assert_eq!(c.form.get("username").map(String::as_str), Some("ada"));
    assert_eq!(c.form.get("password").map(String::as_str), Some("ada-password"));
    assert!(!c.form.contains_key("client_secret"), "basic client auth must not repeat the secret in the body");
    // base64("app:client-secret")
    assert_eq!(c.header("authorization"), Some("Basic YXBwOmNsaWVudC1zZWNyZXQ="));
    assert_eq!(c.header("content-type"), Some("application/x-www-form-urlencoded"));
    // A second call uses the cached token: no new request.
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(kinds(&events(&lk, "?connector=api").await), ["token.obtained"]);
}

#[tokio::test]
async fn a_500_then_success_is_retried_within_the_call() {
    let fake = FakeOAuth::start().await;
    fake.script(&[Step::Error(500, "server_error")]);
    let (lk, app) = setup(&fake, "").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn a_token_endpoint_timeout_is_transient_and_reported() {
    let fake = FakeOAuth::start().await;
    fake.script(&[Step::Slow(3_000), Step::Slow(3_000), Step::Slow(3_000)]);
    let (lk, app) = setup(&fake, "timeout_ms = 300").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    assert!(r.body.contains("timeout"), "{}", r.body);
    assert_eq!(fake.token_requests(), 3, "three tries within the call");
    let ev = events(&lk, "?kind=token.refresh_failed").await;
    assert_eq!(ev[0]["outcome"], "transient");
    // A grant (no refresh token yet) that times out has nothing to lose: not ambiguous.
    assert_eq!(lk.metric("latchkey_refresh_ambiguous_total").await, 0.0);
}

/// A refresh whose answer is lost (the provider may have rotated) is recorded and counted as
/// ambiguous, and retried at once with the same refresh token; a grant's timeout is not
/// ambiguous (nothing can be lost by repeating it).
#[tokio::test]
async fn a_lost_refresh_answer_is_counted_as_ambiguous_and_retried_at_once() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    // Every token is stale at once: the second call refreshes.
    let (lk, app) = setup(&fake, "timeout_ms = 300\nrefresh_skew_s = 60").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    let ambiguous = || lk.metric("latchkey_refresh_ambiguous_total");
    assert_eq!(ambiguous().await, 0.0);
    fake.script(&[Step::Slow(3_000)]);
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ambiguous().await, 1.0);
    let ev = events(&lk, "?kind=token.refresh_ambiguous").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["outcome"], "retrying");
    let grants: Vec<String> = fake.calls().iter().map(|c| c.grant().to_owned()).collect();
    assert_eq!(grants, ["password", "refresh_token", "refresh_token"], "the retry presents the refresh token");
    let presented: Vec<Option<String>> =
        fake.calls()[1..].iter().map(|c| c.form.get("refresh_token").cloned()).collect();
    assert_eq!(presented[0], presented[1], "the retry presents the same refresh token");
}

#[tokio::test]
async fn invalid_grant_is_terminal_recorded_and_not_retried() {
    let fake = FakeOAuth::start().await;
    fake.script(&[Step::Error(400, "invalid_grant")]);
    let (lk, app) = setup(&fake, "").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["provider_error"], "invalid_grant");
    assert_eq!(v["error"]["provider_error_description"], "scripted invalid_grant");
    // Later calls fail fast without hammering the provider.
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
    assert_eq!(fake.token_requests(), 1);
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/tokens").send().await.unwrap()).await;
    assert_eq!(r.json()["tokens"][0]["state"], "reauthorization_required", "{}", r.body);
    assert_eq!(kinds(&events(&lk, "").await), ["token.refresh_failed", "token.reauthorization_required"]);
    // Fixing the secret lets the next call try again, and it recovers.
    lk.put_secret("pw", "live", "new-password").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let k = kinds(&events(&lk, "").await);
    assert_eq!(k[2..], ["token.obtained", "token.recovered"], "{k:?}");
}

/// SECURITY R1: 500 concurrent requests on an expired token, one refresh, 500 successes.
#[tokio::test]
async fn r1_five_hundred_concurrent_calls_on_an_expired_token_make_one_token_request() {
    let fake = FakeOAuth::start().await;
    fake.set_delay(Duration::from_millis(500));
    let (lk, app) = setup(&fake, "").await;
    let lk = std::sync::Arc::new(lk);
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let lk = lk.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(async move { lk.call(&app, "api", "echo", json!({})).await.status }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == 200);
    }
    assert_eq!(ok, 500);
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn rotation_on_every_use_never_ends_in_invalid_grant() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    // Every token is stale at once: each call refreshes (and rotates).
    let (lk, app) = setup(&fake, "refresh_skew_s = 60").await;
    for _ in 0..10 {
        assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    }
    let lk = std::sync::Arc::new(lk);
    for _ in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let (lk, app) = (lk.clone(), app.clone());
            tasks.push(tokio::spawn(async move { lk.call(&app, "api", "echo", json!({})).await.status }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
    }
    assert_eq!(fake.reused_refresh_tokens(), 0, "a used refresh token was presented again");
    let grants: Vec<String> = fake.calls().iter().map(|c| c.grant().to_owned()).collect();
    assert_eq!(grants[0], "password");
    assert!(grants[1..].iter().all(|g| g == "refresh_token"), "{grants:?}");
    assert!(grants.len() >= 11);
}

#[tokio::test]
async fn an_upstream_401_triggers_one_refresh_and_one_retry() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = setup(&fake, "").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    fake.expire_access_tokens();
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.calls()[1].grant(), "refresh_token");
    // The proxy does the same for small bodies.
    fake.expire_access_tokens();
    let r =
        Reply::read(lk.http.post(lk.url("/v1/proxy/api/api/echo")).bearer_auth(&app).body("x").send().await.unwrap())
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.token_requests(), 3);
}

#[tokio::test]
async fn a_401_with_a_token_just_obtained_is_returned_as_is() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = setup(&fake, "").await;
    // The resource refuses everything on this path's fresh tokens: no refresh loop.
    fake.script(&[]);
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/api/api/echo")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    fake.expire_access_tokens();
    fake.script(&[Step::Ok]);
    let before = fake.token_requests();
    // After one refresh the new token works; a second 401 would be passed through, not looped.
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.token_requests(), before + 1);
}

#[tokio::test]
async fn refresh_on_matches_a_non_standard_expiry_signal() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = setup(&fake, "refresh_on = { status = [401, 403], body_contains = \"token expired\" }").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    fake.expire_access_tokens();
    let r = lk.call(&app, "api", "soft", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn a_transient_failure_keeps_a_still_valid_token_and_recovers() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(3600);
    let (lk, app) = setup(&fake, "refresh_skew_s = 3600").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    let rt = fake.current_refresh_token();
    fake.script(&[Step::Error(503, "temporarily_unavailable"); 3]);
    // Stale (inside the skew) but still valid: the call goes out with it.
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.current_refresh_token(), rt, "the refresh token changed on a transient failure");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/tokens").send().await.unwrap()).await;
    assert_eq!(r.json()["tokens"][0]["state"], "degraded", "{}", r.body);
    assert!(r.body.contains("temporarily_unavailable"), "{}", r.body);
    let k = kinds(&events(&lk, "?connector=api").await);
    assert_eq!(k, ["token.obtained", "token.refresh_failed"]);
}

#[tokio::test]
async fn tokens_survive_a_restart_without_a_new_request() {
    let fake = FakeOAuth::start().await;
    let (mut lk, app) = setup(&fake, "").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    let work = lk.keep_work_dir();
    let config = std::fs::read_to_string(work.path().join("latchkey.toml")).unwrap();
    lk.kill();
    let again =
        Latchkey::start_with(bin(), Options { config, data_dir: Some(lk.data_dir.clone()), ..Options::default() })
            .unwrap();
    assert_eq!(again.call(&app, "api", "echo", json!({})).await.status, 200);
    assert_eq!(fake.token_requests(), 1, "a restart fetched a new token");
}

#[tokio::test]
async fn custom_token_requests_carry_exactly_the_configured_headers_and_body() {
    let fake = FakeOAuth::start().await;
    fake.set_issue_refresh(false);
    let config = format!(
        r#"[connectors.custom]
base_url = "{base}"
auth = {{ method = "oauth2_custom_token", token_url = "{token}", token_headers = {{ "X-Api-Key" = "<api_key>", "X-Tenant" = "t-<tenant>" }}, token_body = '{{"user": "<user>", "secret": "<api_secret>", "n": "<n>", "note": "for <user>"}}', token_name = "access_token", expires_in_name = "expires_in", secrets = {{ api_key = {{ secret = "ck" }}, api_secret = {{ secret = "cs" }} }}, values = {{ user = "ada", tenant = "acme", n = 7 }} }}
[connectors.custom.calls.echo]
path = "/api/echo"
"#,
        base = fake.base_url,
        token = fake.token_url
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("ck", "live", "key-1").await;
    lk.put_secret("cs", "live", "sec\"ret").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "custom", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = &fake.calls()[0];
    assert_eq!(c.header("x-api-key"), Some("key-1"));
    assert_eq!(c.header("x-tenant"), Some("t-acme"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(body, json!({"user": "ada", "secret": "sec\"ret", "n": 7, "note": "for ada"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_obtains_a_token_per_connector_and_reports_failures() {
    let fake = FakeOAuth::start().await;
    let (lk, _app) = setup(&fake, "").await;
    let out = lk.cli(&["check", "--live"], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("api: ok (live, ") && text.contains(": full grant at "), "{text}");
    assert!(text.contains("token obtained (expires ") && text.contains("; not stored"), "{text}");
    let fake2 = FakeOAuth::start().await;
    fake2.script(&[Step::Error(401, "invalid_client")]);
    let (lk2, _) = setup(&fake2, "").await;
    let out = lk2.cli(&["check", "--live"], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("api: FAILED") && text.contains("invalid_client (401): scripted invalid_client"), "{text}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_within_the_call() {
    let fake = FakeOAuth::start().await;
    fake.script(&[Step::RetryAfter(1)]);
    let (lk, app) = setup(&fake, "").await;
    let started = std::time::Instant::now();
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.token_requests(), 2);
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was not honoured");
    // A Retry-After beyond the cap is not waited out inside a call: the call fails fast.
    let fake = FakeOAuth::start().await;
    fake.script(&[Step::RetryAfter(3600)]);
    let (lk, app) = setup(&fake, "").await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    assert_eq!(fake.token_requests(), 1);
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.error_code(), Some("token_request_failed"));
    assert_eq!(fake.token_requests(), 1, "the provider's Retry-After was ignored between calls");
}
