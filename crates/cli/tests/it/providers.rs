//! Provider templates end to end: the quirks a template handles, against an in-process
//! provider that behaves as the real one documents (a refresh token only with
//! `access_type=offline`, refresh tokens that do not rotate, an expired token answered `200`
//! with the error in the body); the catalog through the CLI and the admin API.

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::latchkey::run_cli;
use reqwest::Method;
use serde_json::{Value, json};

use super::connections::connect_through;
use super::*;

/// Latchkey with connector `svc` from template `provider`, its provider's URLs pointed at
/// `fake` (the connector's own fields win), `extra` merged into the connector's `auth`, and
/// user `ada` connected. Returns (Latchkey, app key).
async fn connected(fake: &FakeOAuth, provider: &str, extra: Value, connector: Value) -> (Latchkey, String) {
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    lk.put_secret("cs", "live", "fake-secret").await;
    let mut auth = json!({"authorize_url": format!("{}/authorize", fake.base_url), "token_url": fake.token_url,
        "client_id": "app", "client_secret": {"secret": "cs"}, "profile_url": null, "revoke_url": null});
    auth.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let mut def = json!({"provider": provider, "base_url": fake.base_url, "auth": auth,
        "calls": {"echo": {"path": "/api/echo"}, "slack_like": {"path": "/api/ok-false"}}});
    def.as_object_mut().unwrap().extend(connector.as_object().cloned().unwrap_or_default());
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/svc").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Served (and stored) whole, as merged: a field the connector unset stays unset.
    let served = r.json();
    assert_eq!(served["definition"]["auth"]["token_url"], fake.token_url.as_str(), "{served}");
    assert!(served["definition"]["auth"].get("profile_url").is_none(), "{served}");
    let app = lk.app_key("live").await;
    connect_through(&lk, &app, "svc", "ada").await;
    (lk, app)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn call(lk: &Latchkey, app: &str, name: &str) -> Reply {
    Reply::read(
        lk.http
            .post(lk.url(&format!("/v1/connectors/svc/calls/{name}")))
            .bearer_auth(app)
            .json(&json!({"user": "ada"}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Google gives a refresh token only to a login URL with `access_type=offline`: the `google`
/// template asks for it, so an expired access token is refreshed; the same connector with
/// `offline_access = false` written over the template gets no refresh token, and must
/// reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_google_template_asks_for_offline_access_so_it_gets_a_refresh_token() {
    let fake = FakeOAuth::start().await;
    fake.set_refresh_only_with("access_type", "offline");
    let (lk, app) = connected(&fake, "google", json!({}), json!({})).await;
    let code = fake.calls().into_iter().find(|c| c.grant() == "authorization_code").unwrap();
    // The template's client authentication: the secret in the body, with PKCE.
    assert_eq!(code.form.get("client_secret").map(String::as_str), Some("fake-secret"));
    assert!(code.form.contains_key("code_verifier") && code.header("authorization").is_none());
    assert_eq!(call(&lk, &app, "echo").await.status, 200);
    fake.expire_access_tokens();
    let r = call(&lk, &app, "echo").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.calls().iter().filter(|c| c.grant() == "refresh_token").count(), 1);

    let fake = FakeOAuth::start().await;
    fake.set_refresh_only_with("access_type", "offline");
    let (lk, app) = connected(&fake, "google", json!({"offline_access": false}), json!({})).await;
    fake.expire_access_tokens();
    let r = call(&lk, &app, "echo").await;
    assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
}

/// HubSpot's refresh tokens do not rotate: a refresh answers an access token only, and the
/// same refresh token serves the next refresh too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_that_does_not_rotate_is_kept_and_used_again() {
    let fake = FakeOAuth::start().await;
    fake.set_rotate(false);
    let (lk, app) = connected(&fake, "hubspot", json!({}), json!({})).await;
    for _ in 0..2 {
        fake.expire_access_tokens();
        let r = call(&lk, &app, "echo").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let presented: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.grant() == "refresh_token")
        .map(|c| c.form["refresh_token"].clone())
        .collect();
    assert_eq!(presented.len(), 2, "{presented:?}");
    assert_eq!(presented[0], presented[1]);
    assert_eq!(fake.reused_refresh_tokens(), 0);
    // HubSpot takes the client's secret in the body.
    assert!(fake.calls().iter().all(|c| c.form.get("client_secret").map(String::as_str) == Some("fake-secret")));
}

/// Slack answers a call with an expired (rotated) token `200 {"ok":false,"error":"token_expired"}`:
/// the `slack` template's `refresh_on` takes that for a refused token, refreshes and sends
/// the call again. Without it (the connector writes its own `refresh_on`), the 200 goes back
/// as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_template_refreshes_on_token_expired_in_a_200() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = connected(&fake, "slack", json!({}), json!({})).await;
    fake.expire_access_tokens();
    let r = call(&lk, &app, "slack_like").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ok"], true, "refreshed and sent again: {}", r.body);
    assert_eq!(fake.calls().iter().filter(|c| c.grant() == "refresh_token").count(), 1);

    let fake = FakeOAuth::start().await;
    let (lk, app) = connected(&fake, "slack", json!({}), json!({"refresh_on": {"status": [401]}})).await;
    fake.expire_access_tokens();
    let r = call(&lk, &app, "slack_like").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (200, Some("token_expired")), "{}", r.body);
    assert_eq!(fake.calls().iter().filter(|c| c.grant() == "refresh_token").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_through_the_admin_api() {
    let lk = Latchkey::start(bin(), "");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/providers?limit=2").send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["has_more"], true);
    assert_eq!(v["providers"].as_array().unwrap().len(), 2);
    assert_eq!(v["providers"][0]["name"], "airtable", "{v}");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/providers/zendesk").send().await.unwrap()).await;
    let v = r.json();
    assert_eq!(v["params"]["subdomain"]["example"], "acme", "{v}");
    assert_eq!(v["example"]["provider_params"]["subdomain"], "acme", "{v}");
    assert_eq!(v["needs"][1]["field"], "auth.client_secret", "{v}");
    assert_eq!(v["fills"]["auth"]["token_url"], "https://{subdomain}.zendesk.com/oauth/tokens", "{v}");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/providers/nope").send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    // An app key may not read it.
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/providers")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn providers_list_and_show_need_no_configuration() {
    let work = tempfile::tempdir().unwrap();
    // A configuration that does not load does not stop the catalog's commands.
    std::fs::write(work.path().join("latchkey.toml"), "[connectors.x]\nbase_url = 1\n").unwrap();
    let data = work.path().join("data");
    let out = run_cli(bin(), work.path(), &data, &[], &["providers", "list"], None);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("NAME\tMETHOD\tPARAMS\tTITLE\n"), "{stdout}");
    assert!(stdout.lines().count() > 50, "{stdout}");
    assert!(stdout.contains("\nzendesk\toauth2_authorization_code\tsubdomain\tZendesk (user OAuth)\n"), "{stdout}");
    let out = run_cli(bin(), work.path(), &data, &[], &["providers", "show", "microsoft"], None);
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("  tenant: the Entra ID tenant"), "{stdout}");
    assert!(
        stdout.contains(
            "auth = { client_id = \"YOUR_CLIENT_ID\", client_secret = { secret = \"microsoft_client_secret\" } }"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  latchkey secret set microsoft_client_secret\n"), "{stdout}");
    let out = run_cli(bin(), work.path(), &data, &[], &["providers", "show", "google", "--json"], None);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fills"]["auth"]["offline_access"], true, "{v}");
    let out = run_cli(bin(), work.path(), &data, &[], &["providers", "show", "gogle"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no provider template named `gogle` (see `latchkey providers list`)"),
        "{}",
        text(&out)
    );
    assert!(!data.exists(), "a catalog command made a data directory");
}
