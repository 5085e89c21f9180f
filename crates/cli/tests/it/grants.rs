//! The OAuth2 app-level grants against real authorization servers: Authlib (PyPI) for the
//! password, client-credentials, refresh (with rotation) and JWT-bearer grants; oidc-provider
//! (npm) for client credentials.

use latchkey_testkit::peers::authlib::{self, ClientAuth, ClientOptions, authlib};
use latchkey_testkit::peers::oidc::oidc;
use latchkey_testkit::recorder::Recorder;
use serde_json::{Value, json};

use super::*;

const ME: &str = "[connectors.up.calls.me]\npath = \"/api/me\"\n";

fn password_auth(token_url: &str, user: &str, client_id: &str, client_auth: &str) -> String {
    format!(
        "{{ method = \"oauth2_password\", token_url = \"{token_url}\", username = \"{user}\", password = {{ secret = \"pw\" }}, \
         client_id = \"{client_id}\", client_secret = {{ secret = \"cs\" }}, client_auth = \"{client_auth}\", scope = [\"read\", \"write\"] }}"
    )
}

async fn me(lk: &Latchkey, app: &str) -> Value {
    let r = lk.call(app, "up", "me", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn password_grant_with_basic_and_with_body_client_auth() {
    let a = authlib();
    for (opts, client_auth) in [(ClientAuth::Basic, "basic"), (ClientAuth::Post, "body")] {
        let client = a.register_client(&ClientOptions { auth: opts, ..ClientOptions::default() });
        let lk = with_connector(&a.base_url, &password_auth(&a.token_url, &a.user, &client.id, client_auth), ME);
        lk.put_secret("pw", "live", &a.password).await;
        lk.put_secret("cs", "live", &client.secret).await;
        let app = lk.app_key("live").await;
        let v = me(&lk, &app).await;
        assert_eq!((v["user"].as_str(), v["client_id"].as_str()), (Some("ada"), Some(client.id.as_str())), "{v}");
        assert_eq!(v["grant_type"], "password");
        let stats = a.client_stats(&client.id);
        assert_eq!(stats["password"]["ok"], 1, "{stats}");
    }
}

#[tokio::test]
async fn a_client_using_the_wrong_client_auth_gets_the_providers_error() {
    let a = authlib();
    let client = a.register_client(&ClientOptions { auth: ClientAuth::Basic, ..ClientOptions::default() });
    let lk = with_connector(&a.base_url, &password_auth(&a.token_url, &a.user, &client.id, "body"), ME);
    lk.put_secret("pw", "live", &a.password).await;
    lk.put_secret("cs", "live", &client.secret).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "me", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    assert_eq!(r.json()["error"]["provider_error"], "invalid_client");
    assert!(!r.body.contains(&client.secret));
}

#[tokio::test]
async fn refresh_with_rotation_keeps_working_against_authlib() {
    let a = authlib();
    let client = a.register_client(&ClientOptions {
        auth: ClientAuth::Basic,
        expires_in: Some(120),
        ..ClientOptions::default()
    });
    // Every token is inside the refresh window at once: each call refreshes and rotates.
    let lk = with_connector(
        &a.base_url,
        &password_auth(&a.token_url, &a.user, &client.id, "basic"),
        &format!("refresh_skew_s = 120\n{ME}"),
    );
    lk.put_secret("pw", "live", &a.password).await;
    lk.put_secret("cs", "live", &client.secret).await;
    let app = lk.app_key("live").await;
    for _ in 0..5 {
        me(&lk, &app).await;
    }
    let stats = a.client_stats(&client.id);
    assert_eq!(stats["password"]["ok"], 1, "{stats}");
    assert_eq!(stats["refresh_token"]["ok"], 4, "{stats}");
    assert_eq!(stats["refresh_token"]["error"], 0, "a rotated-out refresh token was reused: {stats}");
    // Concurrent callers on a stale token: still one refresh per round, never a reuse.
    let lk = std::sync::Arc::new(lk);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (lk, app) = (lk.clone(), app.clone());
        tasks.push(tokio::spawn(async move { lk.call(&app, "up", "me", json!({})).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let stats = a.client_stats(&client.id);
    assert_eq!(stats["refresh_token"]["error"], 0, "{stats}");
}

#[tokio::test]
async fn client_credentials_against_authlib_and_oidc_provider() {
    let a = authlib();
    let client = a.register_client(&ClientOptions { auth: ClientAuth::Basic, ..ClientOptions::default() });
    let auth = format!(
        "{{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"{}\", client_secret = {{ secret = \"cs\" }} }}",
        a.token_url, client.id
    );
    let lk = with_connector(&a.base_url, &auth, ME);
    lk.put_secret("cs", "live", &client.secret).await;
    let app = lk.app_key("live").await;
    let v = me(&lk, &app).await;
    assert_eq!(
        (v["grant_type"].as_str(), v["client_id"].as_str()),
        (Some("client_credentials"), Some(client.id.as_str()))
    );

    // oidc-provider: the token Latchkey sends upstream is one the provider says is active.
    let o = oidc();
    let registered = o.register("client_secret_post", &["client_credentials"], &[]).await;
    let up = Recorder::start().await;
    let auth = format!(
        "{{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"{}\", client_secret = {{ secret = \"cs\" }}, client_auth = \"body\", scope = \"api:read\" }}",
        o.token_url, registered.client_id
    );
    let lk = with_connector(&up.base_url, &auth, "[connectors.up.calls.ping]\npath = \"/ping\"\n");
    lk.put_secret("cs", "live", registered.client_secret.as_deref().unwrap()).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let info = o.introspect(&registered, &sent).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], registered.client_id.as_str());
    assert_eq!(info["scope"], "api:read");
}

fn jwt_auth(token_url: Option<&str>, issuer: Option<&str>, audience: Option<&str>) -> String {
    let mut s = String::from("{ method = \"jwt_bearer\", private_key = { secret = \"sa\" }, scope = \"read\"");
    if let Some(t) = token_url {
        s.push_str(&format!(", token_url = \"{t}\""));
    }
    if let Some(i) = issuer {
        s.push_str(&format!(", issuer = \"{i}\""));
    }
    if let Some(a) = audience {
        s.push_str(&format!(", audience = \"{a}\""));
    }
    s.push_str(" }");
    s
}

#[tokio::test]
async fn jwt_bearer_with_pkcs1_pkcs8_and_a_service_account_key() {
    let a = authlib();
    for (label, key, auth) in [
        ("pkcs1", a.jwt.pkcs1_pem.clone(), jwt_auth(Some(&a.token_url), Some(&a.jwt.issuer), None)),
        ("pkcs8", a.jwt.pkcs8_pem.clone(), jwt_auth(Some(&a.token_url), Some(&a.jwt.issuer), None)),
        // The service-account JSON supplies the issuer and the token URL.
        ("service account", a.jwt.service_account_json.clone(), jwt_auth(None, None, None)),
    ] {
        let lk = with_connector(&a.base_url, &auth, ME);
        lk.put_secret("sa", "live", &key).await;
        let app = lk.app_key("live").await;
        let r = lk.call(&app, "up", "me", json!({})).await;
        assert_eq!(r.status, 200, "{label}: {}", r.body);
        let v = r.json();
        assert_eq!(v["grant_type"], authlib::JWT_BEARER_GRANT, "{label}: {v}");
        assert_eq!(v["client_id"], a.jwt.client_id.as_str(), "{label}");
        assert_eq!(v["scope"], "read", "{label}");
    }
}

#[tokio::test]
async fn jwt_bearer_with_a_wrong_audience_or_key_is_refused_clearly() {
    let a = authlib();
    let lk = with_connector(
        &a.base_url,
        &jwt_auth(Some(&a.token_url), Some(&a.jwt.issuer), Some("https://elsewhere.example/token")),
        ME,
    );
    lk.put_secret("sa", "live", &a.jwt.pkcs8_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "me", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["provider_error"], "invalid_grant");
    assert_eq!(e["provider_error_description"], "Invalid claim: 'aud'");

    let lk = with_connector(&a.base_url, &jwt_auth(Some(&a.token_url), Some(&a.jwt.issuer), None), ME);
    lk.put_secret("sa", "live", &a.jwt.wrong_key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "me", json!({})).await;
    assert_eq!(r.json()["error"]["provider_error"], "invalid_grant", "{}", r.body);

    let lk = with_connector(&a.base_url, &jwt_auth(Some(&a.token_url), Some(&a.jwt.issuer), None), ME);
    lk.put_secret("sa", "live", "not a key").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "me", json!({})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.body.contains("PKCS#1") && r.body.contains("service-account"), "{}", r.body);
}
